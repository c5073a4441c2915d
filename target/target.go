package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/proxy"
)

// Journal is where launches are written: the run's journal, which counts
// a line it cannot write and ends the run ERROR for it. A step of teardown
// whose line is lost has nothing else to do about it (what it undid is
// undone; recover would undo it again, harmlessly), so it goes on.
type Journal interface {
	Append(journal.Event) error
}

// Env is what a run gives its targets.
type Env struct {
	Journal Journal
	// NextID returns a journal id no other step of the run has.
	NextID func() string
	// Log is processes.log: what launched processes print.
	Log io.Writer
	// Progress says what setup did ("proxy p listening on ..."); nil
	// says nothing.
	Progress func(format string, args ...any)
	// Exited is told of a launched process that exited on its own; nil
	// ignores it.
	Exited func(msg string)
	// Guard runs fn on a goroutine of the run, turning a panic into the
	// run's end; nil runs fn as it is.
	Guard func(what string, fn func())
	// Seed seeds the embedded proxies' random draws.
	Seed int64
	// Run is the run's id: the network's bridge, namespaces and tables are
	// named after it.
	Run string
}

// Target is one target of a run: a *Process, *Proxy, *DNS or *Pods.
type Target interface {
	// Spec is the target as the file gives it (references filled in once
	// Set.Resolve has run).
	Spec() *experiment.Target
}

// Set is every target of a run.
type Set struct {
	env    Env
	x      *experiment.Experiment
	order  []Target
	byName map[string]Target
	net    netState
}

// New returns the targets of an experiment, not set up yet.
func New(x *experiment.Experiment, env Env) *Set {
	if env.Progress == nil {
		env.Progress = func(string, ...any) {}
	}
	if env.Exited == nil {
		env.Exited = func(string) {}
	}
	if env.Guard == nil {
		env.Guard = func(_ string, fn func()) { fn() }
	}
	s := &Set{env: env, x: x, byName: map[string]Target{}}
	for i := range x.Targets {
		spec := x.Targets[i]
		var t Target
		switch {
		case spec.Process != nil:
			t = &Process{spec: spec, env: &s.env, set: s}
		case spec.Proxy != nil, spec.Intercept != nil:
			t = &Proxy{spec: spec}
		case spec.DNS != nil:
			t = &DNS{spec: spec}
		case spec.Pods != nil:
			t = &Pods{spec: spec, set: s}
		default:
			continue
		}
		s.order = append(s.order, t)
		s.byName[spec.Name] = t
	}
	return s
}

// Get returns the target of a name, nil if there is none.
func (s *Set) Get(name string) Target { return s.byName[name] }

// Setup finds the processes that already run and gives launched ones
// their ports, checks remote proxies and clusters, then starts embedded
// proxies and DNS resolvers (whose addresses may name those ports), in
// file order. Launched processes start in Launch, once references are
// filled.
func (s *Set) Setup(ctx context.Context) error {
	if s.x.UsesNetwork() {
		if lacks := netfault.Lacks(ctx); len(lacks) > 0 {
			var say []string
			for _, l := range lacks {
				say = append(say, l.String())
			}
			return fmt.Errorf("this machine cannot run the experiment's network faults: %s", strings.Join(say, "; "))
		}
	}
	for _, t := range s.order {
		switch t := t.(type) {
		case *Process:
			if err := t.setup(); err != nil {
				return err
			}
		case *Proxy:
			if err := t.setupRemote(ctx); err != nil {
				return err
			}
		case *Pods:
			var err error
			if t.Client, err = kube.Open(t.spec.Pods.Kubeconfig); err != nil {
				return fmt.Errorf("target %s: %w", t.spec.Name, err)
			}
			if err := t.checkAgentAccess(ctx, s.x); err != nil {
				return err
			}
		}
	}
	if err := s.setupNetwork(ctx); err != nil {
		return err
	}
	for _, t := range s.order {
		if p, ok := t.(*Proxy); ok && p.spec.Proxy != nil && p.spec.Proxy.API == "" {
			if err := s.startProxy(p); err != nil {
				return err
			}
		}
	}
	for _, t := range s.order {
		if d, ok := t.(*DNS); ok && d.spec.DNS.Intercept == nil {
			if err := d.start(s.FillRefs, s.env.Progress); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Set) startProxy(p *Proxy) error {
	spec := p.spec
	listen, err1 := s.FillRefs(spec.Proxy.Listen)
	upstream, err2 := s.FillRefs(spec.Proxy.Upstream)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("target %s: %w", spec.Name, err)
	}
	cfg := proxy.Config{Name: spec.Name, Listen: listen, Upstream: upstream, Seed: s.env.Seed}
	for _, f := range s.x.Faults {
		if f.Target == spec.Name && experiment.HTTPAction(f.Action) {
			cfg.Protocol = "http" // HTTP faults act on connections opened before them too
		}
	}
	p.Embedded = proxy.New(cfg)
	if err := p.Embedded.Start(); err != nil {
		p.Embedded = nil
		return fmt.Errorf("target %s: embedded proxy: %w", spec.Name, err)
	}
	s.env.Progress("proxy %s listening on %s -> %s", spec.Name, p.Embedded.Listen(), upstream)
	return nil
}

// Resolve gives every target its spec with references filled in (filled
// is the experiment with them filled, as x with its targets in the same
// order), and fills each launched instance's command and ready: {port}
// and {instance} of its own, then fill.
func (s *Set) Resolve(filled *experiment.Experiment, fill func(string) string) {
	for i := range filled.Targets {
		t := s.byName[filled.Targets[i].Name]
		if t == nil {
			continue
		}
		orig := s.x.Targets[i]
		switch t := t.(type) {
		case *Process:
			t.spec = filled.Targets[i]
			t.resolve(orig.Process, fill)
		case *Proxy:
			t.spec = filled.Targets[i]
		case *DNS:
			t.spec = filled.Targets[i]
		case *Pods:
			t.spec = filled.Targets[i]
		}
	}
}

// Launch starts the processes the run launches, in file order, each
// instance ready before the next starts.
func (s *Set) Launch(ctx context.Context) error {
	for _, t := range s.order {
		p, ok := t.(*Process)
		if !ok || !p.spec.Process.Launched() {
			continue
		}
		for _, in := range p.Instances {
			if err := p.Launch(ctx, in); err != nil {
				return err
			}
			s.env.Progress("started %s[%d]: pid %d, %s", p.spec.Name, in.Index, in.Proc.PID, strings.Join(in.Args, " "))
		}
	}
	return nil
}

// Teardown stops what the run launched, in the reverse of its start
// order (SIGKILL after 5 s, or at once when hurry closes), and the
// embedded proxies and resolvers, then removes what it made of the network.
func (s *Set) Teardown(hurry <-chan struct{}) {
	for i := len(s.order) - 1; i >= 0; i-- {
		switch t := s.order[i].(type) {
		case *Process:
			t.stop(5*time.Second, hurry)
		case *Proxy:
			if t.Embedded != nil {
				t.Embedded.Stop()
			}
		case *DNS:
			if t.Server != nil {
				t.Server.Stop()
			}
		}
	}
	// An intercept's proxy stops before its redirect goes: the connections
	// it carries are translated back by the redirect's NAT, which ends with
	// the namespace's last nat chain, and a client whose connection closed
	// after that never sees it closed (a pooled connection that hangs).
	// A connection made in between is refused. A resolver stops after its
	// redirect: a query then is answered by the one it was sent to.
	for _, t := range s.order {
		if t, ok := t.(*Proxy); ok {
			for _, p := range t.Intercepted {
				p.Stop()
			}
		}
	}
	s.teardownNetwork()
	for _, t := range s.order {
		if t, ok := t.(*DNS); ok {
			for _, d := range t.Intercepted {
				d.Stop()
			}
		}
	}
}

// FillRefs replaces {T.port}, {T[i].port}, {T.addr} and {T.addrs} (every
// instance's IP:PORT, comma-separated: 127.0.0.1, or its own address when
// isolated), {T.ip} and {T[i].ip}; for an embedded proxy, its listen
// address; for a resolver, its own; and {host.ip}, the address isolated
// namespaces reach the host at.
func (s *Set) FillRefs(str string) (string, error) {
	var errs []error
	out := experiment.RefPattern.ReplaceAllStringFunc(str, func(m string) string {
		g := experiment.RefPattern.FindStringSubmatch(m)
		if m == "{host.ip}" && s.byName["host"] == nil {
			if !s.HostIP().IsValid() {
				errs = append(errs, fmt.Errorf("%s: no target is isolated (network: isolated), so there is no bridge", m))
				return m
			}
			return s.HostIP().String()
		}
		t, ok := s.byName[g[1]]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no target %q", m, g[1]))
			return m
		}
		addrs := addresses(t)
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
		host, port, _ := net.SplitHostPort(addrs[i])
		switch g[3] {
		case "addr":
			return addrs[i]
		case "ip":
			return host
		}
		return port
	})
	return out, errors.Join(errs...)
}

// Addresses says where each target of the run is, once Setup has given
// them their ports: "NAME=IP:PORT" (NAME[i] for each instance of a
// launched process), in file order; a target with no address of its own
// (a remote proxy, pods) is left out.
func (s *Set) Addresses() []string {
	var out []string
	for _, t := range s.order {
		addrs := addresses(t)
		for i, a := range addrs {
			name := t.Spec().Name
			if _, ok := t.(*Process); ok {
				name = fmt.Sprintf("%s[%d]", name, i)
			}
			out = append(out, name+"="+a)
		}
	}
	return out
}

func addresses(t Target) []string {
	switch t := t.(type) {
	case *Proxy:
		if t.Embedded != nil {
			return []string{t.Embedded.Listen()}
		}
	case *DNS:
		if t.Server != nil {
			return []string{t.Server.Addr()}
		}
	case *Process:
		var out []string
		for _, in := range t.Instances {
			if in.Port != 0 {
				out = append(out, net.JoinHostPort(in.IP(), strconv.Itoa(in.Port)))
			}
		}
		return out
	}
	return nil
}

// Proxy is a proxy target: Embedded in the run, or one of a remote API
// reached through Client; or an intercept target, whose proxies (one in
// each network namespace of its from: target) are Intercepted.
type Proxy struct {
	spec        experiment.Target
	Embedded    *proxy.Proxy
	Client      *proxy.Client
	Intercepted []*proxy.Proxy
	// InPods is the pods target an intercept acts in, through agents (its
	// faults carry their own proxies); nil otherwise.
	InPods *Pods
}

// Local returns the proxies of the run that the target is: the embedded
// one, or an intercept's.
func (p *Proxy) Local() []*proxy.Proxy {
	if p.Embedded != nil {
		return []*proxy.Proxy{p.Embedded}
	}
	return p.Intercepted
}

// Spec is the target as the file gives it.
func (p *Proxy) Spec() *experiment.Target { return &p.spec }

func (p *Proxy) setupRemote(ctx context.Context) error {
	px := p.spec.Proxy
	if px == nil || px.API == "" {
		return nil
	}
	token := px.Token
	if token == "" {
		token = os.Getenv("FAULTLINE_TOKEN")
	}
	p.Client = proxy.NewClient(px.API, token)
	if _, err := p.Client.Proxy(ctx, px.Name); err != nil {
		return fmt.Errorf("target %s: proxy %s at %s: %w", p.spec.Name, px.Name, px.API, err)
	}
	return nil
}

// DNS is a resolver the run starts: Server, or when it intercepts, one in
// each network namespace of its from: target, Intercepted.
type DNS struct {
	spec        experiment.Target
	Server      *dnsfault.Server
	Intercepted []*dnsfault.Server
	// InPods is the pods target whose queries it answers, through an
	// agent per fault; nil otherwise.
	InPods *Pods
}

// Servers returns the run's resolvers that the target is.
func (d *DNS) Servers() []*dnsfault.Server {
	if d.Server != nil {
		return []*dnsfault.Server{d.Server}
	}
	return d.Intercepted
}

// Spec is the target as the file gives it.
func (d *DNS) Spec() *experiment.Target { return &d.spec }

// dnsConfig is the configuration of a dns target's resolver, but where it
// listens.
func dnsConfig(spec *experiment.DNSTarget) dnsfault.Config {
	records := map[string][]net.IP{}
	for name, ip := range spec.Records {
		records[strings.ToLower(strings.TrimSuffix(name, "."))] = []net.IP{net.ParseIP(ip)}
	}
	return dnsfault.Config{Upstream: spec.Upstream, Records: records}
}

func (d *DNS) start(fill func(string) (string, error), progress func(string, ...any)) error {
	spec := *d.spec.DNS
	spec.Records = map[string]string{}
	for name, ip := range d.spec.DNS.Records {
		filled, err := fill(ip) // {payments.ip}: isolated targets have their addresses by now
		if err != nil {
			return fmt.Errorf("target %s: records.%s: %w", d.spec.Name, name, err)
		}
		spec.Records[name] = filled
	}
	cfg := dnsConfig(&spec)
	cfg.Listen = spec.Listen
	srv := dnsfault.New(cfg)
	if err := srv.Start(); err != nil {
		return fmt.Errorf("target %s: dns resolver on %s: %w", d.spec.Name, spec.Listen, err)
	}
	d.Server = srv
	progress("dns resolver %s listening on %s (udp and tcp)", d.spec.Name, srv.Addr())
	return nil
}
