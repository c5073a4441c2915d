package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/internal/freeport"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/proxy"
)

// instance is one process of a process target.
type instance struct {
	index    int
	port     int      // {port}, 0 if the command has none
	args     []string // the command with {port}, {instance} and {self} filled in
	ready    string
	cmd      *exec.Cmd // nil for a process the run did not launch
	proc     journal.Proc
	done     chan struct{} // closed when a launched process exits
	launchID string        // journal id of its launch
	// expectExit is set before the run itself kills or stops the process.
	expectExit atomic.Bool
}

// target is an experiment target as the run holds it.
type target struct {
	spec      experiment.Target
	instances []*instance
	proxy     *proxy.Proxy  // embedded
	client    *proxy.Client // remote
	dns       *dnsfault.Server
	kube      *kube.Client // pods
}

// tag returns instance i's value of tag key.
func (t *target) tag(i int, key string) (string, bool) {
	vals, ok := t.spec.Tags[key]
	if !ok || len(vals) == 0 {
		return "", false
	}
	return vals[i%len(vals)], true
}

// fill replaces {port}, {instance}, {self} and {run_dir} in s.
func fill(s string, in *instance, self, runDir string) string {
	s = strings.ReplaceAll(s, "{port}", strconv.Itoa(in.port))
	s = strings.ReplaceAll(s, "{instance}", strconv.Itoa(in.index))
	s = strings.ReplaceAll(s, "{run_dir}", runDir)
	return strings.ReplaceAll(s, "{self}", self)
}

// fillRefs replaces {T.port}, {T[i].port}, {T.addr} and {T.addrs} (every
// instance's 127.0.0.1:PORT, comma-separated); for an embedded proxy, its
// listen address.
func (r *run) fillRefs(s string) (string, error) {
	var errs []error
	out := experiment.RefPattern.ReplaceAllStringFunc(s, func(m string) string {
		g := experiment.RefPattern.FindStringSubmatch(m)
		t, ok := r.targets[g[1]]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no target %q", m, g[1]))
			return m
		}
		var addrs []string
		if t.proxy != nil {
			addrs = []string{t.proxy.Listen()}
		}
		if t.dns != nil {
			addrs = []string{t.dns.Addr()}
		}
		for _, in := range t.instances {
			if in.port != 0 {
				addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port)))
			}
		}
		if len(addrs) == 0 {
			errs = append(errs, fmt.Errorf("%s: target %s has no address", m, g[1]))
			return m
		}
		if g[3] == "addrs" {
			return strings.Join(addrs, ",")
		}
		i := 0
		if g[2] != "" {
			i, _ = strconv.Atoi(g[2])
		}
		if i >= len(addrs) {
			errs = append(errs, fmt.Errorf("%s: target %s has %d instance(s)", m, g[1], len(addrs)))
			return m
		}
		if g[3] == "addr" {
			return addrs[i]
		}
		_, port, _ := net.SplitHostPort(addrs[i])
		return port
	})
	return out, errors.Join(errs...)
}

// resolveRefs fills in references once every target has its ports:
// {NAME.port} and the like, {self} and {run_dir} anywhere in the
// experiment (r.fx, a filled copy; r.x keeps the text as written, for
// what results show), and {port} and {instance} in each launched
// instance's command and ready.
func (r *run) resolveRefs() error {
	self, _ := os.Executable()
	runDir, _ := filepath.Abs(r.opts.OutDir)
	var errs []error
	fillRefs := func(s string) string {
		s = strings.ReplaceAll(strings.ReplaceAll(s, "{self}", self), "{run_dir}", runDir)
		out, err := r.fillRefs(s)
		errs = append(errs, err)
		return out
	}
	r.fx = filledCopy(r.x, fillRefs)
	for i, spec := range r.fx.Targets {
		t := r.targets[spec.Name]
		t.spec = spec
		p := spec.Process
		if p == nil || !p.Launched() {
			continue
		}
		orig := r.x.Targets[i].Process // {port} and {instance} are the instance's
		for _, in := range t.instances {
			in.args = nil
			for _, a := range orig.Command {
				in.args = append(in.args, fillRefs(fill(a, in, self, runDir)))
			}
			in.ready = fillRefs(fill(orig.Ready, in, self, runDir))
		}
	}
	for i, f := range r.faults {
		f.spec = r.fx.Faults[i]
	}
	if tr := r.fx.Traffic; tr != nil {
		r.traffic = tr.Requests
	}
	r.probes = map[int]*experiment.Probe{}
	for i, c := range r.fx.SteadyState {
		if c.Probe != nil {
			r.probes[i] = c.Probe
		}
	}
	return errors.Join(errs...)
}

// freePort returns a loopback port free just now.
func freePort() (int, error) { return freeport.Get() }

// setupProcess prepares a process target's instances: launched ones get
// their ports (they start in launch); existing ones are found.
func (r *run) setupProcess(t *target) error {
	p := t.spec.Process
	if p.Launched() {
		// Every instance gets a port: its own command says {port}, others
		// may say {NAME.port}. Commands are filled in once every target
		// has its ports (resolveRefs).
		for i := range p.Instances {
			port, err := freePort()
			if err != nil {
				return err
			}
			t.instances = append(t.instances, &instance{index: i, port: port})
		}
		return nil
	}
	pids, err := FindProcesses(p)
	if err != nil {
		return fmt.Errorf("target %s: %w", t.spec.Name, err)
	}
	for i, pid := range pids {
		id, err := process.Identify(pid)
		if err != nil {
			continue
		}
		t.instances = append(t.instances, &instance{index: i, proc: id})
	}
	if len(t.instances) == 0 {
		return fmt.Errorf("target %s: no such process running", t.spec.Name)
	}
	return nil
}

// FindProcesses lists the pids of a process target that is already
// running: its pid, its pidfile's, or those whose command line matches;
// a target that reaches a process faultline never acts on is an error
// (process.Find).
func FindProcesses(p *experiment.ProcessTarget) ([]int, error) {
	return process.Find(p.Selector())
}

// launch starts a launched instance and waits until it is ready. It dies
// with the runner (SIGKILL on the runner's death), and is journaled so that
// recover can stop it too.
func (r *run) launch(ctx context.Context, t *target, in *instance) error {
	cmd := exec.Command(in.args[0], in.args[1:]...)
	out := &prefixWriter{w: r.procLog, prefix: fmt.Sprintf("%s[%d] ", t.spec.Name, in.index)}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("target %s[%d]: start %s: %w", t.spec.Name, in.index, in.args[0], err)
	}
	in.cmd, in.done = cmd, make(chan struct{})
	in.expectExit.Store(false)
	done := in.done
	go func() {
		defer close(done)
		err := cmd.Wait()
		r.guard("watching "+t.spec.Name, func() {
			if !in.expectExit.Load() {
				r.unexpectedExit(t, in, cmd.Process.Pid, err)
			}
		})
	}()
	in.proc, _ = process.Identify(cmd.Process.Pid)
	id := r.nextID()
	_ = r.j.Append(journal.Event{Type: journal.Intent, ID: id, Name: fmt.Sprintf("launch %s[%d]", t.spec.Name, in.index),
		Launch: &journal.Launch{Target: t.spec.Name, Instance: in.index},
		Undo:   &journal.Undo{Kind: "kill", Procs: []journal.Proc{in.proc}, Group: true}})
	in.launchID = id
	if in.ready == "" {
		return nil
	}
	if err := waitReady(ctx, in.ready, in.done, 30*time.Second); err != nil {
		return fmt.Errorf("target %s[%d] (pid %d): %w; its output is in processes.log", t.spec.Name, in.index, in.proc.PID, err)
	}
	return nil
}

// unexpectedExit records a launched process that exited on its own.
func (r *run) unexpectedExit(t *target, in *instance, pid int, err error) {
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	msg := fmt.Sprintf("%s[%d] (pid %d) exited on its own: %s; its output is in processes.log", t.spec.Name, in.index, pid, status)
	_ = r.journal(journal.Event{Type: journal.Note, Message: msg})
	r.progressf("%s", msg)
	r.exitsMu.Lock()
	r.exits = append(r.exits, msg)
	r.exitsMu.Unlock()
}

// prefixWriter starts every line with a prefix and the time.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mid    bool // within a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, time.Now().Format("15:04:05.000 ")+p.prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// waitReady polls a URL (until 2xx) or tcp://HOST:PORT (until it connects).
func waitReady(ctx context.Context, ready string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		var err error
		if addr, ok := strings.CutPrefix(ready, "tcp://"); ok {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return nil
			}
		} else {
			var resp *http.Response
			if resp, err = client.Get(ready); err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					return nil
				}
				err = errors.New(resp.Status)
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before %s was ready", ready)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v", ready, limit, err)
		}
	}
}

// stopInstance stops a launched instance: SIGTERM to its group, SIGKILL
// after grace, or at once when hurry closes.
func stopInstance(in *instance, grace time.Duration, hurry <-chan struct{}) {
	if in.cmd == nil || in.done == nil {
		return
	}
	in.expectExit.Store(true)
	_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGTERM)
	_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	select {
	case <-in.done:
	case <-time.After(grace):
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-in.done
	case <-hurry:
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-in.done
	}
}

// selectInstances picks the instances a fault hits, at random with the
// run's seed.
func (r *run) selectInstances(t *target, sel experiment.Selection) ([]*instance, error) {
	var pool []*instance
	for _, in := range t.instances {
		ok := true
		for k, v := range sel.Tags {
			got, has := t.tag(in.index, k)
			ok = ok && has && got == v
		}
		if ok {
			pool = append(pool, in)
		}
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("target %s: the selection matches no instance", t.spec.Name)
	}
	return choose(r, t, pool, sel, "instances")
}

// choose picks sel's share of a pool that is not empty (ALL, COUNT(n) or
// PERCENT(p), at least one), at random with the run's seed, within
// max_targets; what names the members in errors.
func choose[T any](r *run, t *target, pool []T, sel experiment.Selection, what string) ([]T, error) {
	n := len(pool)
	switch sel.Mode {
	case "COUNT":
		n = min(sel.N, len(pool))
	case "PERCENT":
		n = min(len(pool), max(1, int(math.Ceil(float64(sel.N)*float64(len(pool))/100))))
	}
	if n > r.x.MaxTargets {
		return nil, fmt.Errorf("target %s: %d %s selected, over max_targets %d", t.spec.Name, n, what, r.x.MaxTargets)
	}
	out := make([]T, 0, n)
	for _, i := range r.rand.Perm(len(pool))[:n] {
		out = append(out, pool[i])
	}
	return out, nil
}
