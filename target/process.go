package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/internal/freeport"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/process"
)

// Process is a process target: instances the run launches, or processes
// that already ran when it started.
type Process struct {
	spec      experiment.Target
	env       *Env
	set       *Set
	Instances []*Instance
}

// Set is the run's targets, which this one is of.
func (p *Process) Set() *Set { return p.set }

// Spec is the target as the file gives it.
func (p *Process) Spec() *experiment.Target { return &p.spec }

// Launched reports whether the run starts the processes itself.
func (p *Process) Launched() bool { return p.spec.Process.Launched() }

// Instance is one process of a process target.
type Instance struct {
	Index int
	Port  int      // {port}; every launched instance has one
	Args  []string // the command, everything filled in
	Ready string
	// Proc is the process now (with its start time).
	Proc process.Proc
	// Done is closed when a launched process exits.
	Done chan struct{}
	// ExpectExit is set before the run itself kills or stops the process,
	// so that its exit is not reported as one on its own.
	ExpectExit atomic.Bool
	// Net is the instance's own network namespace (network: isolated).
	Net *netfault.Instance

	cmd      *exec.Cmd // nil for a process the run did not launch
	launchID string    // journal id of its launch
}

// IP is the instance's address: its own when isolated, else 127.0.0.1.
func (in *Instance) IP() string {
	if in.Net != nil {
		return in.Net.Addr.String()
	}
	return "127.0.0.1"
}

// Tag returns instance i's value of tag key.
func (p *Process) Tag(i int, key string) (string, bool) {
	vals, ok := p.spec.Tags[key]
	if !ok || len(vals) == 0 {
		return "", false
	}
	return vals[i%len(vals)], true
}

// setup gives launched instances their ports (they start in Launch) and
// finds existing processes.
func (p *Process) setup() error {
	spec := p.spec.Process
	if spec.Launched() {
		// Every instance gets a port: its own command says {port}, others
		// may say {NAME.port}.
		for i := range spec.Instances {
			port, err := freeport.Get()
			if err != nil {
				return err
			}
			p.Instances = append(p.Instances, &Instance{Index: i, Port: port})
		}
		return nil
	}
	pids, err := process.Find(spec.Selector())
	if err != nil {
		return fmt.Errorf("target %s: %w", p.spec.Name, err)
	}
	for i, pid := range pids {
		id, err := process.Identify(pid)
		if err != nil {
			continue
		}
		p.Instances = append(p.Instances, &Instance{Index: i, Proc: id})
	}
	if len(p.Instances) == 0 {
		return fmt.Errorf("target %s: no such process running", p.spec.Name)
	}
	return nil
}

// resolve fills each launched instance's command and ready.
func (p *Process) resolve(orig *experiment.ProcessTarget, fill func(string) string) {
	if !orig.Launched() {
		return
	}
	for _, in := range p.Instances {
		own := func(s string) string {
			s = strings.ReplaceAll(s, "{port}", strconv.Itoa(in.Port))
			s = strings.ReplaceAll(s, "{ip}", in.IP())
			return fill(strings.ReplaceAll(s, "{instance}", strconv.Itoa(in.Index)))
		}
		in.Args = nil
		for _, a := range orig.Command {
			in.Args = append(in.Args, own(a))
		}
		in.Ready = own(orig.Ready)
	}
}

// Launch starts a launched instance (again, after a kill) and waits until
// it is ready. It dies with the runner (SIGKILL on the runner's death),
// in a process group of its own, and is journaled first with how to stop
// its whole group, so that recover can.
func (p *Process) Launch(ctx context.Context, in *Instance) error {
	cmd := exec.Command(in.Args[0], in.Args[1:]...)
	if in.Net != nil {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("target %s[%d]: %w", p.spec.Name, in.Index, err)
		}
		cmd = netfault.Command(self, in.Net.NS, in.Args[0], in.Args[1:]...)
	}
	out := &PrefixWriter{W: p.env.Log, Prefix: fmt.Sprintf("%s[%d] ", p.spec.Name, in.Index)}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("target %s[%d]: start %s: %w", p.spec.Name, in.Index, in.Args[0], err)
	}
	in.cmd, in.Done = cmd, make(chan struct{})
	in.ExpectExit.Store(false)
	done := in.Done
	go func() {
		defer close(done)
		err := cmd.Wait()
		p.env.Guard("watching "+p.spec.Name, func() {
			if !in.ExpectExit.Load() {
				p.unexpectedExit(in, cmd.Process.Pid, err)
			}
		})
	}()
	in.Proc, _ = process.Identify(cmd.Process.Pid)
	id := p.env.NextID()
	if err := p.env.Journal.Append(journal.Event{Type: journal.Intent, ID: id, Name: fmt.Sprintf("launch %s[%d]", p.spec.Name, in.Index),
		Launch: &journal.Launch{Target: p.spec.Name, Instance: in.Index},
		Undo:   &journal.Undo{Kind: "kill", Procs: []journal.Proc{in.Proc}, Group: true}}); err != nil {
		p.stopInstance(in, 0, nil)
		return fmt.Errorf("target %s[%d]: journal: %w", p.spec.Name, in.Index, err)
	}
	in.launchID = id
	if in.Ready == "" {
		return nil
	}
	if err := waitReady(ctx, in.Ready, in.Done, 30*time.Second); err != nil {
		return fmt.Errorf("target %s[%d] (pid %d): %w; its output is in processes.log", p.spec.Name, in.Index, in.Proc.PID, err)
	}
	return nil
}

// unexpectedExit reports a launched process that exited on its own.
func (p *Process) unexpectedExit(in *Instance, pid int, err error) {
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	msg := fmt.Sprintf("%s[%d] (pid %d) exited on its own: %s; its output is in processes.log", p.spec.Name, in.Index, pid, status)
	_ = p.env.Journal.Append(journal.Event{Type: journal.Note, Message: msg}) // a lost line is counted (see Journal)
	p.env.Exited(msg)
}

// stop stops every launched instance still running.
func (p *Process) stop(grace time.Duration, hurry <-chan struct{}) {
	for _, in := range p.Instances {
		p.stopInstance(in, grace, hurry)
	}
}

// stopInstance stops a launched instance: SIGTERM to its group, SIGKILL
// after grace, or at once when hurry closes; and journals it undone.
func (p *Process) stopInstance(in *Instance, grace time.Duration, hurry <-chan struct{}) {
	if in.cmd == nil || in.Done == nil {
		return
	}
	in.ExpectExit.Store(true)
	pgid := -in.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	_ = syscall.Kill(pgid, syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	select {
	case <-in.Done:
	case <-time.After(grace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-in.Done
	case <-hurry:
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-in.Done
	}
	if in.launchID != "" {
		_ = p.env.Journal.Append(journal.Event{Type: journal.Undone, ID: in.launchID}) // a lost line is counted (see Journal)
	}
	in.cmd = nil
}

// Select picks the instances a fault hits, at random with rnd, within
// max (max_targets).
func (p *Process) Select(sel experiment.Selection, rnd *rand.Rand, max int) ([]*Instance, error) {
	var pool []*Instance
	for _, in := range p.Instances {
		ok := true
		for k, v := range sel.Tags {
			got, has := p.Tag(in.Index, k)
			ok = ok && has && got == v
		}
		if ok {
			pool = append(pool, in)
		}
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("target %s: the selection matches no instance", p.spec.Name)
	}
	return Choose(p.spec.Name, pool, sel, rnd, max, "instances")
}

// Choose picks sel's share of a pool that is not empty (ALL, COUNT(n) or
// PERCENT(p), at least one), at random with rnd, refusing more than limit;
// target and what name them in errors.
func Choose[T any](target string, pool []T, sel experiment.Selection, rnd *rand.Rand, limit int, what string) ([]T, error) {
	n := len(pool)
	switch sel.Mode {
	case "COUNT":
		n = min(sel.N, len(pool))
	case "PERCENT":
		n = min(len(pool), max(1, int(math.Ceil(float64(sel.N)*float64(len(pool))/100))))
	}
	if n > limit {
		return nil, fmt.Errorf("target %s: %d %s selected, over max_targets %d", target, n, what, limit)
	}
	out := make([]T, 0, n)
	for _, i := range rnd.Perm(len(pool))[:n] {
		out = append(out, pool[i])
	}
	return out, nil
}

// PrefixWriter starts every line with Prefix and the time.
type PrefixWriter struct {
	W      io.Writer
	Prefix string
	mid    bool // within a line
}

func (p *PrefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, time.Now().Format("15:04:05.000 ")+p.Prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.W.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// waitReady polls a URL (until 2xx) or tcp://HOST:PORT (until it connects).
func waitReady(ctx context.Context, ready string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
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
