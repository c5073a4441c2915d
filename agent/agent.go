// Package agent is faultline inside a pod. Run by the runner in an
// ephemeral container of the target pod (`faultline agent`), it shares the
// pod's network namespace, the target container's process namespace and
// the pod's cgroup, and holds one fault there: a network fault as nftables
// rules in the run's own tables, an intercept (a proxy in the pod with
// toxics), or a stress ('faultline stress') as its child. The fault cannot outlive the run:
// it holds a lease that the runner renews over the container's standard
// input, and the agent takes the fault back by itself when the lease runs
// out, when it is told to, when it is stopped, or when it panics.
//
// The protocol is lines of text. The runner sends "apply", then "renew"
// more often than the lease, and "revert" at the fault's end; the agent
// answers "applied" (or "failed: WHY") and, once the fault is gone,
// "reverted: WHY", which it also leaves as the container's termination
// message so that whoever looks later can tell.
package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/proxy"
)

// DefaultLease is how long a fault stays without a renewal.
const DefaultLease = 15 * time.Second

// Spec is what one agent puts in place, passed as JSON on its command line.
type Spec struct {
	// Run and Fault name the nftables tables (faultline_RUN) and chains
	// (FAULT.*) the fault lives in.
	Run   string `json:"run"`
	Fault string `json:"fault"`
	// One of Partition, PacketLoss, Intercept and Stress.
	Partition  *netfault.Partition  `json:"partition,omitempty"`
	PacketLoss *netfault.PacketLoss `json:"packet_loss,omitempty"`
	Intercept  *Intercept           `json:"intercept,omitempty"`
	Stress     *Stress              `json:"stress,omitempty"`
	Signal     *Signal              `json:"signal,omitempty"`
	DNS        *DNS                 `json:"dns,omitempty"`
	// Lease is how long the fault stays in place without a renewal.
	Lease Duration `json:"lease"`
	// StartBy is when an agent that has not applied its fault gives up: an
	// agent whose container started late (a slow image pull), after the
	// runner gave up on it, applies nothing.
	StartBy time.Time `json:"start_by"`
}

// Duration is a time.Duration written as "15s" in JSON.
type Duration time.Duration

// MarshalText writes it as time.Duration's String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what time.ParseDuration takes.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Intercept sends the pod's TCP connections to To through a faultline
// proxy in the pod, with Toxics on it, or with the proxy down (its port
// closed: every such connection refused).
type Intercept struct {
	To     []netfault.Dest   `json:"to"`
	Toxics []proxy.ToxicInfo `json:"toxics,omitempty"`
	Down   bool              `json:"down,omitempty"`
}

// Signal sends a signal to every process of one container of the pod:
// those whose cgroup names Container (its runtime's id). The pod shares one
// process namespace (shareProcessNamespace), so that the container's main
// process is not the init of its own namespace, which ignores SIGSTOP and
// SIGKILL sent from inside it. SIGSTOP is taken back with SIGCONT; other
// signals have nothing to take back (the kubelet restarts the container).
type Signal struct {
	Signal    string `json:"signal"` // SIGSTOP, SIGKILL, SIGTERM, ...
	Container string `json:"container"`
}

// DNS answers the pod's DNS queries (UDP and TCP port 53, to any
// resolver) with a faultline resolver in the pod: Rules first, then
// Records, then Upstream (default: the pod's own resolver, from
// /etc/resolv.conf).
type DNS struct {
	Rules    []string          `json:"rules,omitempty"`
	Records  map[string]string `json:"records,omitempty"`
	Upstream string            `json:"upstream,omitempty"`
}

// Stress is 'faultline stress RESOURCE ARGS...' run by the agent in its
// container, which is in the pod's cgroup: the pod's CPU and memory are
// what it uses up.
type Stress struct {
	Resource string   `json:"resource"` // cpu, memory or connections
	Args     []string `json:"args,omitempty"`
}

// ParseSpec reads a Spec and checks it.
func ParseSpec(s string) (Spec, error) {
	var sp Spec
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		return Spec{}, fmt.Errorf("agent spec: %w", err)
	}
	switch {
	case sp.Run == "" || sp.Fault == "":
		return Spec{}, errors.New("agent spec: run and fault are required")
	case count(sp.Partition != nil, sp.PacketLoss != nil, sp.Intercept != nil, sp.Stress != nil, sp.Signal != nil, sp.DNS != nil) != 1:
		return Spec{}, errors.New("agent spec: want exactly one of partition, packet_loss, intercept, stress, signal and dns")
	case sp.Signal != nil && (signals[sp.Signal.Signal] == 0 || !validContainerID(sp.Signal.Container)):
		return Spec{}, fmt.Errorf("agent spec: signal %q to container %q: want a signal name and a container id", sp.Signal.Signal, sp.Signal.Container)
	case sp.Intercept != nil && len(sp.Intercept.To) == 0:
		return Spec{}, errors.New("agent spec: intercept: to is required")
	case sp.Stress != nil && !slices.Contains([]string{"cpu", "memory", "connections"}, sp.Stress.Resource):
		return Spec{}, fmt.Errorf("agent spec: stress %q: want cpu, memory or connections", sp.Stress.Resource)
	case sp.Lease <= 0:
		return Spec{}, errors.New("agent spec: lease must be positive")
	case sp.StartBy.IsZero():
		return Spec{}, errors.New("agent spec: start_by is required")
	}
	return sp, nil
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// String writes the Spec as ParseSpec reads it.
func (s Spec) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (s Spec) fault() netfault.Fault {
	if s.Partition != nil {
		return *s.Partition
	}
	return *s.PacketLoss
}

// The lines of the protocol.
const (
	Apply    = "apply"
	Renew    = "renew"
	Revert   = "revert"
	Applied  = "applied"
	Failed   = "failed: "
	Reverted = "reverted: "
)

// TerminationLog is where the container's termination message goes.
var TerminationLog = "/dev/termination-log"

// Run is the agent: it waits for "apply" on in, applies the fault in its
// own network namespace, holds it while the lease is renewed, and takes it
// back. It returns once nothing of the fault is left, or with the error
// that left something (the run's tables, which the runner's recover then
// removes through the journal). stop is closed on a signal.
func Run(ctx context.Context, spec Spec, in io.Reader, out io.Writer, stop <-chan struct{}) error {
	return RunIn(ctx, "/proc/self/ns/net", spec, in, out, stop)
}

// RunIn is Run acting in the network namespace at nsPath instead of its
// own.
func RunIn(ctx context.Context, nsPath string, spec Spec, in io.Reader, out io.Writer, stop <-chan struct{}) (err error) {
	a := &agent{spec: spec, out: out, nsPath: nsPath, panicked: make(chan any, 1)}
	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	a.goSafe(func() { // blocked in a read until in ends: the process exits with the agent
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- strings.TrimSpace(sc.Text()):
			case <-done:
				return
			}
		}
	})
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(fmt.Errorf("agent panicked: %v", p), a.revert("the agent panicked"))
		}
	}()

	wait := time.Until(spec.StartBy)
	if lease := time.Duration(spec.Lease); wait > lease {
		wait = lease
	}
	if wait <= 0 {
		a.say(Reverted + "started after its start_by: nothing applied")
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for !a.applied {
		select {
		case line, ok := <-lines:
			switch {
			case !ok:
				a.say(Reverted + "input closed before apply: nothing applied")
				return nil
			case line == Revert:
				a.say(Reverted + "told to before apply: nothing applied")
				return nil
			case line == Apply:
				if err := a.apply(ctx); err != nil {
					a.say(Failed + err.Error())
					return err
				}
				a.say(Applied)
				timer.Reset(time.Duration(spec.Lease))
			}
		case <-timer.C:
			a.say(Reverted + "no apply in time: nothing applied")
			return nil
		case <-stop:
			a.say(Reverted + "stopped before apply: nothing applied")
			return nil
		case p := <-a.panicked: // nothing applied yet
			a.say(Failed + fmt.Sprintf("the agent panicked: %v", p))
			return fmt.Errorf("agent panicked: %v", p)
		}
	}
	for {
		select {
		case line, ok := <-lines:
			switch {
			case !ok:
				lines = nil // nobody can renew now: the lease decides
			case line == Renew:
				timer.Reset(time.Duration(spec.Lease))
			case line == Apply:
				a.say(Applied)
			case line == Revert:
				return a.revert("told to")
			}
		case <-timer.C:
			return a.revert(fmt.Sprintf("lease of %v ran out", time.Duration(spec.Lease)))
		case <-stop:
			return a.revert("stopped by a signal")
		case <-ctx.Done():
			return a.revert("stopped: " + ctx.Err().Error())
		case p := <-a.panicked:
			return errors.Join(fmt.Errorf("agent panicked: %v", p), a.revert("the agent panicked"))
		}
	}
}

// goSafe runs fn on a goroutine whose panic reaches Run, which then takes
// the fault back, instead of ending the agent with the fault in place.
func (a *agent) goSafe(fn func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				select {
				case a.panicked <- p:
				default: // one is enough to end it
				}
			}
		}()
		fn()
	}()
}

type agent struct {
	spec    Spec
	nsPath  string
	out     io.Writer
	mu      sync.Mutex
	ops     []netfault.Op // what was made, in order
	proxy   *proxy.Proxy  // an intercept's, if any
	dns     *dnsfault.Server
	stress  *exec.Cmd // the stress running, if any
	stopped []int     // pids a SIGSTOP froze
	// panicked receives a panic of the agent's goroutines.
	panicked chan any
	exited   chan struct{} // closed when it has exited
	applied  bool
}

func (a *agent) say(line string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintln(a.out, line)
	if strings.HasPrefix(line, Reverted) || strings.HasPrefix(line, Failed) {
		_ = os.WriteFile(TerminationLog, []byte(line), 0o644) // absent outside a container
	}
}

func (a *agent) record(op netfault.Op) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ops = append(a.ops, op)
	return nil
}

// apply puts the fault in place in the agent's own network namespace; on
// an error, what it made is taken back.
func (a *agent) apply(ctx context.Context) error {
	if a.spec.Stress != nil {
		return a.startStress()
	}
	if a.spec.Signal != nil {
		return a.signal()
	}
	ns, err := netfault.OpenNS(a.nsPath)
	if err != nil {
		return err
	}
	if _, err := netfault.Tables(ctx, ns, a.spec.Run, a.record); err != nil {
		return errors.Join(err, a.undo())
	}
	if a.spec.Intercept != nil {
		return a.intercept(ctx, ns)
	}
	if a.spec.DNS != nil {
		return a.interceptDNS(ctx)
	}
	if _, err := netfault.Inject(ctx, ns, a.spec.Run, a.spec.Fault, a.spec.fault(), a.record); err != nil {
		return errors.Join(err, a.undo())
	}
	a.applied = true
	return nil
}

// revert takes the fault back and says why.
func (a *agent) revert(why string) error {
	if err := a.undo(); err != nil {
		a.say(Failed + "revert: " + err.Error())
		return err
	}
	a.say(Reverted + why)
	return nil
}

func (a *agent) undo() error {
	if err := a.stopStress(); err != nil {
		return err
	}
	a.mu.Lock()
	stopped := a.stopped
	a.stopped = nil
	a.mu.Unlock()
	for _, pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGCONT) // gone meanwhile: nothing to resume
	}
	a.mu.Lock()
	ops, px := a.ops, a.proxy
	a.ops, a.proxy = nil, nil
	a.mu.Unlock()
	// The proxy's connections end before the redirect goes: their packets
	// are translated back by the redirect's NAT, which ends with the
	// namespace's last nat chain, and a connection closed after that is
	// never seen closed by its client (it hung until the client's own
	// timeout). A connection made in between is refused.
	if px != nil {
		px.Stop()
	}
	var errs []error
	for i := len(ops) - 1; i >= 0; i-- {
		if err := netfault.Undo(context.Background(), ops[i]); err != nil {
			errs = append(errs, err)
		}
	}
	a.mu.Lock()
	srv := a.dns
	a.dns = nil
	a.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	return errors.Join(errs...)
}

// stressNice is the stress's nice value: the lowest priority, so that in
// a pod whose CPU the stress uses up (its limit, shared with the agent's
// own container) the agent still gets the CPU to renew its lease and to
// revert at once. Other containers' share of the pod's CPU is the
// kernel's split between containers, which the nice value does not change.
const stressNice = 19

// startNiced starts cmd at stressNice. Linux keeps a nice value per
// thread and a child inherits the forking thread's: cmd is started from a
// thread of its own, lowered for good (raising it back would take
// CAP_SYS_NICE). That thread stays until release is called, after the
// child has exited: the child's Pdeathsig fires when the thread that
// started it ends, not the agent.
func startNiced(cmd *exec.Cmd) (release func(), err error) {
	done := make(chan error, 1)
	hold := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, stressNice); err != nil {
			done <- fmt.Errorf("lower the stress's priority: %w", err)
			return
		}
		err := cmd.Start()
		done <- err
		if err == nil {
			<-hold
		}
	}()
	if err := <-done; err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { close(hold) }) }, nil
}

// startStress runs the stress as a child of the agent and waits for it to
// say it is in place. The child dies with the agent (Pdeathsig).
func (a *agent) startStress() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	st := a.spec.Stress
	cmd := exec.Command(self, append([]string{"stress", st.Resource}, st.Args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = a.out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	release, err := startNiced(cmd)
	if err != nil {
		return fmt.Errorf("stress %s: %w", st.Resource, err)
	}
	ready := make(chan bool, 1)
	exited := make(chan struct{})
	var last string
	a.goSafe(func() {
		defer close(exited) // also on a panic: stopStress waits for it
		defer release()     // the thread that started it, after it has exited (or on a panic, taking it down)
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready:") && !said {
				said = true
				ready <- true
				continue
			}
			last = sc.Text()
		}
		if !said {
			ready <- false
		}
		_ = cmd.Wait()
	})
	placed := false
	select {
	case placed = <-ready:
	case <-exited: // its reader ended without a word (it panicked)
	}
	if !placed {
		<-exited
		return fmt.Errorf("stress %s ended before it was in place: %s", st.Resource, last)
	}
	a.mu.Lock()
	a.stress, a.exited = cmd, exited
	a.mu.Unlock()
	a.applied = true
	return nil
}

// stopStress stops the stress, if one runs, and waits for it to exit.
func (a *agent) stopStress() error {
	a.mu.Lock()
	cmd, exited := a.stress, a.exited
	a.stress = nil
	a.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}

// intercept starts the proxy in the pod's namespace, with the redirect to
// it, and puts the toxics on it (or takes it down).
func (a *agent) intercept(ctx context.Context, ns netfault.NS) error {
	ic := a.spec.Intercept
	var toxics []proxy.Toxic
	for _, ti := range ic.Toxics { // all read before anything is made
		e, err := proxy.DecodeEffect(ti.Type, ti.Attributes)
		if err != nil {
			return errors.Join(err, a.undo())
		}
		st, err := proxy.ParseStream(ti.Stream)
		if err != nil {
			return errors.Join(err, a.undo())
		}
		tox := ti.Toxicity
		toxics = append(toxics, proxy.Toxic{Name: ti.Name, Stream: st, Toxicity: &tox, Effect: e})
	}
	px, _, err := netfault.InterceptTCP(ctx, ns, a.spec.Run, a.spec.Fault, ic.To, proxy.Config{Name: a.spec.Fault}, a.record)
	if px != nil {
		a.mu.Lock()
		a.proxy = px
		a.mu.Unlock()
	}
	if err != nil {
		return errors.Join(err, a.undo())
	}
	for _, t := range toxics {
		if _, err := px.AddToxic(t); err != nil {
			return errors.Join(err, a.undo())
		}
	}
	if ic.Down {
		px.Stop()
	}
	a.applied = true
	return nil
}

var signals = map[string]syscall.Signal{"SIGSTOP": syscall.SIGSTOP, "SIGKILL": syscall.SIGKILL, "SIGTERM": syscall.SIGTERM,
	"SIGINT": syscall.SIGINT, "SIGHUP": syscall.SIGHUP, "SIGQUIT": syscall.SIGQUIT, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2}

// Signals reports whether the agent sends a signal of that name.
func Signals(name string) bool { return signals[name] != 0 }

func validContainerID(id string) bool {
	if len(id) < 12 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// procRoot is where the agent reads the processes it can see.
var procRoot = "/proc"

// containerPids lists the processes whose cgroup names the container id.
func containerPids(id string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cg, err := os.ReadFile(procRoot + "/" + e.Name() + "/cgroup")
		if err == nil && strings.Contains(string(cg), id) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// signal sends the signal to the container's processes, refusing where
// it would not reach them.
func (a *agent) signal() error {
	sig := signals[a.spec.Signal.Signal]
	pids, err := containerPids(a.spec.Signal.Container)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("no process of container %s is visible here: the pod must share its process namespace (shareProcessNamespace: true), and its cgroups name their containers", a.spec.Signal.Container)
	}
	if slices.Contains(pids, 1) {
		return fmt.Errorf("the container's main process is PID 1 of this namespace, which ignores %s sent from inside: the pod must share its process namespace (shareProcessNamespace: true)", a.spec.Signal.Signal)
	}
	if sig == syscall.SIGSTOP {
		a.mu.Lock()
		a.stopped = pids // before the signal: an interrupted one is taken back too
		a.mu.Unlock()
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("pid %d: %w", pid, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return errors.Join(err, a.undo())
	}
	a.applied = true
	return nil
}

// interceptDNS starts the resolver in the agent's own namespace, with the
// redirect of port 53 to it.
func (a *agent) interceptDNS(ctx context.Context) error {
	if a.nsPath != "/proc/self/ns/net" {
		return errors.Join(errors.New("a dns intercept acts in the agent's own namespace only"), a.undo())
	}
	d := a.spec.DNS
	rules, err := dnsfault.ParseRules(d.Rules)
	if err != nil {
		return errors.Join(err, a.undo())
	}
	cfg := dnsfault.Config{Upstream: d.Upstream, Rules: rules, Records: map[string][]net.IP{}}
	for name, ip := range d.Records {
		addr := net.ParseIP(ip)
		if addr == nil {
			return errors.Join(fmt.Errorf("dns record %s: %q is not an IP", name, ip), a.undo())
		}
		cfg.Records[name] = []net.IP{addr}
	}
	if cfg.Upstream == "" {
		if cfg.Upstream, err = podResolver(); err != nil {
			return errors.Join(err, a.undo())
		}
	}
	srv, _, err := netfault.InterceptDNSHere(ctx, a.spec.Run, a.spec.Fault, cfg, a.record)
	if srv != nil {
		a.mu.Lock()
		a.dns = srv
		a.mu.Unlock()
	}
	if err != nil {
		return errors.Join(err, a.undo())
	}
	a.applied = true
	return nil
}

// resolvConf is where the pod's resolver is named.
var resolvConf = "/etc/resolv.conf"

// podResolver is the first nameserver of the pod's resolv.conf, as
// HOST:53.
func podResolver() (string, error) {
	b, err := os.ReadFile(resolvConf)
	if err != nil {
		return "", fmt.Errorf("the pod's resolver: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			return net.JoinHostPort(f[1], "53"), nil
		}
	}
	return "", fmt.Errorf("the pod's resolver: no nameserver in %s: give the dns target an upstream", resolvConf)
}
