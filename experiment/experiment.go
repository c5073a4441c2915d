package experiment

import (
	"fmt"
	"github.com/faultline/faultline/internal/decode"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/load"
	"github.com/faultline/faultline/probe"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/proxy"
)

// Defaults of an experiment file's optional fields.
const (
	DefaultBaseline    = 5 * time.Second
	DefaultRecovery    = 10 * time.Second
	DefaultMaxTargets  = 10
	DefaultMaxDuration = 15 * time.Minute
	DefaultTimeout     = 5 * time.Second
)

// Experiment is one experiment file, checked and with defaults filled in.
type Experiment struct {
	File        string
	Name        string
	Description string
	Hypothesis  string
	Targets     []Target // in file order
	Traffic     *Traffic // nil: no load
	SteadyState []Check
	Baseline    time.Duration
	// Inject is the inject phase's length: as given, else the latest end
	// among faults with a duration.
	Inject      time.Duration
	Faults      []Fault
	Recovery    time.Duration
	StopWhen    []Condition
	MaxTargets  int
	MaxDuration time.Duration
	// Network is the run's isolated network (network: {subnet: CIDR}).
	Network Network
}

// Target is something faults act on.
type Target struct {
	Name    string
	Pos     Pos
	Process *ProcessTarget
	Proxy   *ProxyTarget
	DNS     *DNSTarget
	Pods    *PodsTarget
	// Intercept is the connections a process target opens to somewhere,
	// through a proxy in its network namespace.
	Intercept *InterceptTarget
	// Tags label instances; a list is assigned round-robin by instance.
	Tags map[string][]string
}

// ProcessTarget is a process the run launches (Command) or one that
// already runs (Match, PID or PIDFile).
type ProcessTarget struct {
	Command   []string
	Ready     string // URL polled until 2xx, or tcp://HOST:PORT, before the baseline
	Instances int
	Restart   []string // how to restart a process the run did not launch
	Match     string   // regexp on the command line
	PID       int
	PIDFile   string
	// AllowOtherUsers allows running processes of another user than
	// faultline's; init, kernel threads and faultline's own ancestry are
	// never allowed.
	AllowOtherUsers bool
	// Isolated (network: isolated) gives each launched instance a network
	// namespace of its own on the run's bridge.
	Isolated bool
}

// Selector is how package process finds a target that already runs.
func (p *ProcessTarget) Selector() process.Selector {
	s := process.Selector{PID: p.PID, PIDFile: p.PIDFile, AllowOtherUsers: p.AllowOtherUsers}
	if p.Match != "" {
		s.Match, _ = regexp.Compile(p.Match) // checked when the file was read
	}
	return s
}

// Launched reports whether the run starts the process itself.
func (p *ProcessTarget) Launched() bool { return len(p.Command) > 0 }

// ProxyTarget is an embedded proxy (Listen, Upstream) or a proxy of a
// remote Toxiproxy-compatible API (API, Name).
type ProxyTarget struct {
	Listen, Upstream string
	API, Name, Token string
}

// PodsTarget is the pods of a namespace that match a label selector, in
// the cluster of Kubeconfig (else $KUBECONFIG, ~/.kube/config, in-cluster),
// resolved once when the fault starts. A selection's tags are labels.
type PodsTarget struct {
	Namespace, Selector, Kubeconfig string
	// Container is the container a fault inside the pod acts with (the
	// agent joins its process namespace); default: the pod's first.
	Container string
	// AgentImage is the image of the agent that network faults put in an
	// ephemeral container of each selected pod: the faultline binary as
	// its entrypoint (deploy/kubernetes/Dockerfile).
	AgentImage string
}

// DNSTarget is a resolver the run starts (package dnsfault): it answers
// Records itself and forwards other names to Upstream; dns faults give it
// rules for their windows.
type DNSTarget struct {
	Listen, Upstream string
	Records          map[string]string // name -> IP, or {T.ip}, {T[i].ip}, {host.ip} until filled
	// Intercept, when set, answers a process target's queries to any
	// resolver; Listen is not used then.
	Intercept *DNSIntercept
}

// Traffic is the open-model load kept up during the whole run.
type Traffic struct {
	Rate     float64 // requests per second
	Timeout  time.Duration
	Requests []Request
}

// Request is one kind of request of the traffic: HTTP (Method, URL,
// Headers, Body), or one of TCP, Redis, SQL, DNS and GRPC.
type Request struct {
	Name    string
	Method  string
	URL     string
	Headers map[string]string
	Body    string
	Weight  float64 // share of the rate; equal shares when all are 0
	TCP     *load.TCP
	Redis   *load.Redis
	SQL     *load.SQL
	DNS     *load.DNS
	GRPC    *load.GRPC
}

// Protocol is the request's protocol: http, tcp, redis, sql, dns or grpc.
// (Not Kind: a Request is not an Action.)
func (r Request) Protocol() string {
	return load.Request{TCP: r.TCP, Redis: r.Redis, SQL: r.SQL, DNS: r.DNS, GRPC: r.GRPC}.Kind().String()
}

// Probe is polled every tick; it passes when it meets its expect.
type Probe = probe.Spec

// Check is one steady-state entry: a condition on the traffic or a probe.
type Check struct {
	Pos       Pos
	Condition *Condition
	Probe     *Probe
	Phases    []string // baseline, inject, recovery
}

// Fault is one fault of the experiment.
type Fault struct {
	Name   string
	Pos    Pos
	Target string
	Start  time.Duration
	// Duration is zero when the fault lasts until the inject phase ends.
	Duration     time.Duration
	Select       Selection
	Direction    string // upstream, downstream (default) or both
	Toxicity     float32
	Irreversible bool
	// AllowHostNetwork lets a network fault act in the host's own network
	// namespace, where it hits every process that talks to its to:.
	AllowHostNetwork bool
	// Lease bounds a fault inside a pod: its agent takes it back when the
	// runner has not renewed it for that long (default 15s).
	Lease  time.Duration
	Action Action
}

// Settings describes the fault as configured, in one line, for results
// and comparisons: "latency (delay 8s, jitter 2s) on pay-link, downstream,
// from 2s for 10s".
func (f Fault) Settings() string {
	var b strings.Builder
	b.WriteString(f.Action.Kind())
	a := any(f.Action)
	if t, ok := f.Action.(ProxyToxic); ok {
		a = t.Effect
	}
	if attrs := fieldsText(reflect.ValueOf(a)); attrs != "" {
		b.WriteString(" (" + attrs + ")")
	}
	if f.Target != "" {
		b.WriteString(" on " + f.Target)
		if _, ok := f.Action.(ProxyToxic); ok {
			b.WriteString(", " + f.Direction)
			if f.Toxicity < 1 {
				fmt.Fprintf(&b, ", toxicity %g", f.Toxicity)
			}
		}
		if sel := f.Select.String(); sel != "ALL" {
			b.WriteString(", select " + sel)
		}
	}
	fmt.Fprintf(&b, ", from %v", f.Start)
	if f.Duration > 0 {
		fmt.Fprintf(&b, " for %v", f.Duration)
	} else {
		b.WriteString(" to the end of injection")
	}
	return b.String()
}

// String is the selection as a file writes it: ALL, COUNT(2), or
// {tags: zone=a} with a count or percent.
func (s Selection) String() string {
	out := s.Mode
	if s.Mode != "ALL" {
		out = fmt.Sprintf("%s(%d)", s.Mode, s.N)
	}
	if len(s.Tags) > 0 {
		var tags []string
		for _, k := range slices.Sorted(maps.Keys(s.Tags)) {
			tags = append(tags, k+"="+s.Tags[k])
		}
		out += " of tags " + strings.Join(tags, ",")
	}
	return out
}

// fieldsText writes a struct's fields that are not zero as "name value,
// ...", names in snake case ("average_size 4").
func fieldsText(v reflect.Value) string {
	if v.Kind() != reflect.Struct {
		return ""
	}
	var parts []string
	for i := range v.NumField() {
		fv, ft := v.Field(i), v.Type().Field(i)
		if !ft.IsExported() || fv.IsZero() || fv.CanInt() && fv.Int() < 0 { // a negative number is "not set" (truncate -1)
			continue
		}
		if ft.Anonymous { // an embedded struct's fields are the action's own
			if inner := fieldsText(fv); inner != "" {
				parts = append(parts, inner)
			}
			continue
		}
		val := fmt.Sprint(fv.Interface())
		switch fv.Kind() {
		case reflect.Slice:
			var items []string
			for j := range fv.Len() {
				items = append(items, fmt.Sprint(fv.Index(j).Interface()))
			}
			val = "[" + strings.Join(items, " ") + "]"
		case reflect.Map:
			var items []string
			for _, k := range fv.MapKeys() {
				items = append(items, fmt.Sprintf("%v=%v", k.Interface(), fv.MapIndex(k).Interface()))
			}
			slices.Sort(items)
			val = "{" + strings.Join(items, " ") + "}"
		}
		parts = append(parts, snake(ft.Name)+" "+val)
	}
	return strings.Join(parts, ", ")
}

// snake turns a Go field name into the file's key style: AverageSize is
// average_size.
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Action is what a fault does: a ProxyToxic, Down, Kill, Stop or Exec.
type Action interface{ Kind() string }

// ProxyToxic adds a toxic to a proxy target.
type ProxyToxic struct{ Effect proxy.Effect }

// Down disables a proxy target: its listener closes, its connections drop.
type Down struct{}

// Kill sends a signal to the selected processes; a launched process (or
// one with restart) is started again on revert.
type Kill struct{ Signal string }

// Stop freezes the selected processes (SIGSTOP), resumed (SIGCONT) on revert.
type Stop struct{}

// Stress exhausts a resource of the machine for the fault's window, in a
// child process of the run ('faultline stress KIND ARGS...'); it needs no
// target.
type Stress struct {
	Resource string   // cpu, memory, disk, connections: the stress command
	Args     []string // the command's flags
	Path     string   // disk: the directory filled, as in Args
}

// PodKill deletes the selected pods: with grace 0, or with each pod's own
// grace period when PodGrace. Their controllers replace them: nothing is
// reverted.
type PodKill struct{ PodGrace bool }

// Scale sets a Deployment's or StatefulSet's replicas in the pods
// target's namespace; the revert restores them.
type Scale struct {
	Resource, Name string // deployment or statefulset
	Replicas       int
}

// Cordon marks the nodes of the selected pods unschedulable; the revert
// makes schedulable again those that were.
type Cordon struct{}

// DNS gives a dns target's resolver Rules ("payments.*=SERVFAIL") for the
// fault's window, in front of the rules it had.
type DNS struct{ Rules []string }

// Exec runs a command to inject and another to revert.
type Exec struct{ Inject, Revert []string }

func (a ProxyToxic) Kind() string { return a.Effect.Type() }
func (Down) Kind() string         { return "down" }
func (Kill) Kind() string         { return "kill" }
func (Stop) Kind() string         { return "stop" }
func (Exec) Kind() string         { return "exec" }
func (DNS) Kind() string          { return "dns" }
func (PodKill) Kind() string      { return "pod_kill" }
func (Scale) Kind() string        { return "scale" }
func (Cordon) Kind() string       { return "cordon" }
func (s Stress) Kind() string {
	if s.Resource == "disk" {
		return "disk_fill"
	}
	return s.Resource
}

// Selection picks the instances a fault hits.
type Selection struct {
	Mode string // ALL, COUNT or PERCENT
	N    int
	Tags map[string]string
}

// Options change how a file is read.
type Options struct {
	// Vars give ${NAME}; the environment is looked up for the others.
	Vars map[string]string
	// AllowNoStop accepts an experiment without stop conditions.
	AllowNoStop bool
	// Actions are action keys beyond the built-in ones, each with how to
	// read its value: the families a fault.Registry has from outside.
	Actions map[string]ActionDecoder
	// AgentImage is the agent image of pods targets that give none
	// (run --agent-image).
	AgentImage string
}

// Phases a steady-state entry may name.
var Phases = []string{"baseline", "inject", "recovery"}

// The keys of each mapping in a file; the JSON Schema is checked against them.
var (
	targetKeys  = []string{"process", "proxy", "dns", "pods", "intercept", "tags"}
	podsKeys    = []string{"namespace", "selector", "kubeconfig", "container", "agent_image"}
	dnsKeys     = []string{"listen", "upstream", "records", "intercept"}
	processKeys = []string{"command", "ready", "instances", "restart", "match", "pid", "pidfile", "allow_other_users", "network"}
	proxyKeys   = []string{"listen", "upstream", "api", "name", "token"}
	trafficKeys = []string{"rate", "timeout", "requests"}
	requestKeys = []string{"name", "method", "url", "headers", "body", "weight", "tcp", "redis", "sql", "dns", "grpc"}
	checkKeys   = []string{"condition", "probe", "expect", "body", "query", "phases", "name", "alert", "prometheus", "token"}
	selectKeys  = []string{"tags", "count", "percent"}
)

var actionKeys = []string{"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data",
	"http_status", "http_latency", "http_body", "http_header", "dns", "down", "kill", "stop", "exec",
	"cpu", "memory", "disk_fill", "connections", "pod_kill", "scale", "cordon", "partition", "packet_loss"}

var topKeys = []string{"version", "name", "description", "hypothesis", "targets", "traffic", "steady_state",
	"baseline", "inject", "faults", "recovery", "stop_when", "max_targets", "max_duration", "network"}

// Parse reads an experiment file. Every problem of the file is reported at
// once, each an *Error with its line, column and field, joined with
// errors.Join.
func Parse(file string, data []byte, opts Options) (*Experiment, error) {
	d := &decoder{Decoder: decode.New(file), actions: opts.Actions, agentImage: opts.AgentImage}
	root, err := decode.Document(file, data, "an experiment needs at least name, targets, faults and stop_when")
	if err != nil {
		return nil, err
	}
	d.ExpandVars(root, opts.Vars, "")
	x := &Experiment{File: file, Baseline: DefaultBaseline, Recovery: DefaultRecovery, MaxTargets: DefaultMaxTargets, MaxDuration: DefaultMaxDuration}
	f := d.Mapping(root, "", topKeys...)
	if n := f.Get("version"); n != nil {
		if n.Value != "1" {
			d.Errorf(n, "version", "only version 1 is known, got %s", decode.KindName(n))
		}
	}
	if n := f.Get("name"); n != nil {
		x.Name = d.Str(n, "name")
	} else {
		d.Errorf(root, "name", "required")
	}
	if n := f.Get("description"); n != nil {
		x.Description = d.Str(n, "description")
	}
	if n := f.Get("hypothesis"); n != nil {
		x.Hypothesis = d.Str(n, "hypothesis")
	}
	if n := f.Get("targets"); n != nil {
		x.Targets = d.targets(n)
	}
	if n := f.Get("traffic"); n != nil {
		x.Traffic = d.traffic(n)
	}
	if n := f.Get("steady_state"); n != nil {
		x.SteadyState = d.steadyState(n)
	}
	if n := f.Get("baseline"); n != nil {
		x.Baseline = d.Positive(n, "baseline")
	}
	if n := f.Get("inject"); n != nil {
		x.Inject = d.Positive(n, "inject")
	}
	if n := f.Get("recovery"); n != nil {
		x.Recovery = d.Duration(n, "recovery")
	}
	if n := f.Get("max_targets"); n != nil {
		if x.MaxTargets = d.Integer(n, "max_targets"); x.MaxTargets < 1 {
			d.Errorf(n, "max_targets", "must be at least 1")
		}
	}
	if n := f.Get("max_duration"); n != nil {
		x.MaxDuration = d.Positive(n, "max_duration")
	}
	if n := f.Get("network"); n != nil {
		x.Network = d.network(n)
	}
	faultsNode := f.Get("faults")
	if faultsNode != nil {
		x.Faults = d.faults(faultsNode)
	}
	if len(x.Faults) == 0 && faultsNode == nil {
		d.Errorf(root, "faults", "required: an experiment without faults tests nothing")
	} else if len(x.Faults) == 0 && faultsNode.Kind == yaml.SequenceNode {
		d.Errorf(faultsNode, "faults", "empty: an experiment without faults tests nothing")
	}
	if f.Get("targets") == nil && slices.ContainsFunc(x.Faults, func(ft Fault) bool { return ft.Target != "" }) {
		d.Errorf(root, "targets", "required: what the faults act on")
	}
	if n := f.Get("stop_when"); n != nil {
		x.StopWhen = d.conditions(n, "stop_when")
	}
	// A stop_when whose entries are all wrong has its own errors already.
	if sw := f.Get("stop_when"); (sw == nil || sw.Kind == yaml.SequenceNode && len(sw.Content) == 0) && !opts.AllowNoStop {
		// At the faults that would run without a safety net, else the top.
		at := root
		if k := f.Key("faults"); k != nil {
			at = k
		}
		if sw != nil {
			at = sw
		}
		d.Errorf(at, "stop_when", "no stop condition: add one (e.g. error_rate > 50%% for 5s) or run with --allow-no-stop")
	}
	d.check(x, root, f)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return x, nil
}

// ParseFile reads and parses an experiment file.
func ParseFile(path string, opts Options) (*Experiment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, opts)
}

func (d *decoder) targets(n *yaml.Node) []Target {
	f := d.Mapping(n, "targets")
	if n.Kind == yaml.MappingNode && len(f.Keys) == 0 {
		d.Errorf(n, "targets", "empty: name at least one target")
	}
	var out []Target
	for _, k := range f.Keys {
		field := "targets." + k.Value
		t := Target{Name: k.Value, Pos: pos(k)}
		if k.Value == "host" {
			d.Errorf(k, field, "the name host is taken: {host.ip} is the address isolated targets reach the host at")
		}
		tf := d.Mapping(f.Get(k.Value), field, targetKeys...)
		p, px, dn, pd, ic := tf.Get("process"), tf.Get("proxy"), tf.Get("dns"), tf.Get("pods"), tf.Get("intercept")
		given := 0
		for _, x := range []*yaml.Node{p, px, dn, pd, ic} {
			if x != nil {
				given++
			}
		}
		switch {
		case given > 1:
			d.Errorf(k, field, "a target is a process, a proxy, an intercept, a dns resolver or pods, one of them")
		case pd != nil:
			t.Pods = d.podsTarget(pd, field+".pods")
		case p != nil:
			t.Process = d.process(p, field+".process")
			d.checkIsolation(t, p, field+".process.network")
		case px != nil:
			t.Proxy = d.proxyTarget(px, field+".proxy")
		case dn != nil:
			t.DNS = d.dnsTarget(dn, field+".dns")
		case ic != nil:
			t.Intercept = d.interceptTarget(ic, field+".intercept")
		default:
			d.Errorf(k, field, "want process:, proxy:, intercept:, dns: or pods:")
		}
		if tg := tf.Get("tags"); tg != nil {
			t.Tags = map[string][]string{}
			tgf := d.Mapping(tg, field+".tags")
			for _, tk := range tgf.Keys {
				t.Tags[tk.Value] = d.StrList(tgf.Get(tk.Value), field+".tags."+tk.Value, true)
			}
		}
		out = append(out, t)
	}
	return out
}

func (d *decoder) process(n *yaml.Node, field string) *ProcessTarget {
	f := d.Mapping(n, field, processKeys...)
	p := &ProcessTarget{Instances: 1}
	ways := 0
	if c := f.Get("command"); c != nil {
		ways++
		if p.Command = d.StrList(c, field+".command", false); len(p.Command) == 0 && c.Kind == yaml.SequenceNode {
			d.Errorf(c, field+".command", "empty")
		}
	}
	if c := f.Get("match"); c != nil {
		ways++
		p.Match = d.Str(c, field+".match")
		if _, err := regexp.Compile(p.Match); err != nil {
			d.Errorf(c, field+".match", "not a valid regexp: %v", err)
		}
	}
	if c := f.Get("pid"); c != nil {
		ways++
		if p.PID = d.Integer(c, field+".pid"); p.PID <= 1 {
			d.Errorf(c, field+".pid", "want a process id above 1")
		}
	}
	if c := f.Get("pidfile"); c != nil {
		ways++
		p.PIDFile = d.Str(c, field+".pidfile")
	}
	if ways != 1 {
		d.Errorf(n, field, "give exactly one of command (launched by the run), match, pid or pidfile (already running)")
	}
	if c := f.Get("ready"); c != nil {
		p.Ready = d.Str(c, field+".ready")
	}
	if c := f.Get("instances"); c != nil {
		p.Instances = d.Integer(c, field+".instances")
		switch {
		case p.Instances < 1:
			d.Errorf(c, field+".instances", "must be at least 1")
		case len(p.Command) == 0:
			d.Errorf(c, field+".instances", "only a launched process (command) can have instances")
		}
	}
	if c := f.Get("allow_other_users"); c != nil {
		p.AllowOtherUsers = d.Boolean(c, field+".allow_other_users")
		if len(p.Command) > 0 {
			d.Errorf(c, field+".allow_other_users", "a launched process runs as faultline's user; allow_other_users is for processes the run did not launch")
		}
	}
	if c := f.Get("network"); c != nil {
		p.Isolated = d.isolation(c, field+".network")
	}
	if c := f.Get("restart"); c != nil {
		p.Restart = d.StrList(c, field+".restart", false)
		if len(p.Command) > 0 {
			d.Errorf(c, field+".restart", "a launched process is restarted with its own command; restart is for processes the run did not launch")
		}
	}
	return p
}

func (d *decoder) proxyTarget(n *yaml.Node, field string) *ProxyTarget {
	f := d.Mapping(n, field, proxyKeys...)
	p := &ProxyTarget{}
	for key, dst := range map[string]*string{"listen": &p.Listen, "upstream": &p.Upstream, "api": &p.API, "name": &p.Name, "token": &p.Token} {
		if v := f.Get(key); v != nil {
			*dst = d.Str(v, field+"."+key)
		}
	}
	for _, key := range []string{"listen", "upstream"} {
		if v := f.Get(key); v != nil && v.Value != "" && !hostPort(v.Value) {
			d.Errorf(v, field+"."+key, "want HOST:PORT (e.g. 127.0.0.1:0 for a free port, or {NAME.addr}), got %q", v.Value)
		}
	}
	embedded, remote := p.Listen != "" || p.Upstream != "", p.API != "" || p.Name != ""
	switch {
	case embedded && remote:
		d.Errorf(n, field, "an embedded proxy (listen, upstream) or a remote one (api, name), not both")
	case embedded && (p.Listen == "" || p.Upstream == ""):
		d.Errorf(n, field, "an embedded proxy needs both listen and upstream")
	case remote && (p.API == "" || p.Name == ""):
		d.Errorf(n, field, "a remote proxy needs both api (its server's URL) and name")
	case !embedded && !remote:
		d.Errorf(n, field, "want listen and upstream (embedded proxy) or api and name (remote proxy)")
	}
	return p
}

func (d *decoder) podsTarget(n *yaml.Node, field string) *PodsTarget {
	f := d.Mapping(n, field, podsKeys...)
	t := &PodsTarget{Namespace: "default"}
	if v := f.Get("namespace"); v != nil {
		t.Namespace = d.Str(v, field+".namespace")
	}
	if v := f.Get("selector"); v != nil {
		t.Selector = d.Str(v, field+".selector")
	} else {
		d.Errorf(n, field+".selector", "required: a label selector, e.g. app=checkout")
	}
	if v := f.Get("kubeconfig"); v != nil {
		t.Kubeconfig = d.Str(v, field+".kubeconfig")
	}
	if v := f.Get("container"); v != nil {
		t.Container = d.Str(v, field+".container")
	}
	t.AgentImage = d.agentImage
	if v := f.Get("agent_image"); v != nil {
		t.AgentImage = d.Str(v, field+".agent_image")
	}
	return t
}

func (d *decoder) dnsTarget(n *yaml.Node, field string) *DNSTarget {
	f := d.Mapping(n, field, dnsKeys...)
	t := &DNSTarget{Listen: "127.0.0.1:0"}
	if v := f.Get("listen"); v != nil {
		t.Listen = d.Str(v, field+".listen")
	}
	if v := f.Get("upstream"); v != nil {
		t.Upstream = d.Str(v, field+".upstream")
		if _, _, err := net.SplitHostPort(t.Upstream); err != nil {
			d.Errorf(v, field+".upstream", "want HOST:PORT of a resolver, e.g. 127.0.0.53:53")
		}
	}
	if v := f.Get("intercept"); v != nil {
		t.Intercept = d.dnsIntercept(v, field+".intercept")
		if f.Get("listen") != nil {
			d.Errorf(f.Get("listen"), field+".listen", "an intercepting resolver listens in its target's network namespace: no listen:")
		}
	}
	if v := f.Get("records"); v != nil {
		t.Records = map[string]string{}
		rf := d.Mapping(v, field+".records")
		for _, k := range rf.Keys {
			ip := d.Str(rf.Get(k.Value), field+".records."+k.Value)
			if net.ParseIP(ip) == nil && !isIPRef(ip) {
				d.Errorf(rf.Get(k.Value), field+".records."+k.Value, "want an IP address or a target's, such as {payments.ip} or {host.ip}; got %q", ip)
			}
			t.Records[k.Value] = ip
		}
	}
	return t
}

// isIPRef reports whether s is one reference to an address and nothing
// else: {NAME.ip}, {NAME[i].ip} or {host.ip}, filled in when the run starts.
func isIPRef(s string) bool {
	m := RefPattern.FindStringSubmatchIndex(s)
	return m != nil && m[0] == 0 && m[1] == len(s) && s[m[6]:m[7]] == "ip"
}

func (d *decoder) traffic(n *yaml.Node) *Traffic {
	f := d.Mapping(n, "traffic", trafficKeys...)
	t := &Traffic{Timeout: DefaultTimeout}
	if r := f.Get("rate"); r != nil {
		s, _ := strings.CutSuffix(d.Str(r, "traffic.rate"), "/s")
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			d.Errorf(r, "traffic.rate", "want requests per second such as 40/s, got %s", decode.KindName(r))
		}
		t.Rate = v
	} else {
		d.Errorf(n, "traffic.rate", "required, e.g. rate: 40/s")
	}
	if v := f.Get("timeout"); v != nil {
		t.Timeout = d.Positive(v, "traffic.timeout")
	}
	rq := f.Get("requests")
	if rq == nil || rq.Kind != yaml.SequenceNode || len(rq.Content) == 0 {
		at := n
		if rq != nil {
			at = rq
		}
		d.Errorf(at, "traffic.requests", "want a list of requests, e.g. - GET http://127.0.0.1:8080/")
		return t
	}
	names := map[string]bool{}
	for i, r := range rq.Content {
		field := fmt.Sprintf("traffic.requests[%d]", i)
		req := Request{Method: "GET"}
		if r.Kind == yaml.ScalarNode {
			req.Method, req.URL = probe.SplitRequest(r.Value)
		} else {
			rf := d.Mapping(r, field, requestKeys...)
			if v := rf.Get("name"); v != nil {
				req.Name = d.Str(v, field+".name")
			}
			if v := rf.Get("method"); v != nil {
				req.Method = strings.ToUpper(d.Str(v, field+".method"))
			}
			if v := rf.Get("url"); v != nil {
				req.URL = d.Str(v, field+".url")
			}
			if v := rf.Get("body"); v != nil {
				req.Body = d.Str(v, field+".body")
			}
			if v := rf.Get("weight"); v != nil {
				if req.Weight = d.Number(v, field+".weight"); req.Weight <= 0 {
					d.Errorf(v, field+".weight", "must be > 0")
				}
			}
			if v := rf.Get("headers"); v != nil {
				req.Headers = map[string]string{}
				hf := d.Mapping(v, field+".headers")
				for _, hk := range hf.Keys {
					req.Headers[hk.Value] = d.Str(hf.Get(hk.Value), field+".headers."+hk.Value)
				}
			}
			if d.requestKind(&req, rf, r, field) {
				continue // said: one kind per entry
			}
		}
		if req.Protocol() == "http" && !strings.HasPrefix(req.URL, "http://") && !strings.HasPrefix(req.URL, "https://") {
			d.Errorf(r, field, "want an http:// or https:// URL (or tcp:, redis:, sql:, dns:, grpc:), got %q", req.URL)
		}
		if req.Name != "" {
			if names[req.Name] {
				d.Errorf(r, field+".name", "%q names two requests", req.Name)
			}
			names[req.Name] = true
		}
		t.Requests = append(t.Requests, req)
	}
	return t
}

// stopKeys are a stop condition's keys when it is an alert or a query.
var stopKeys = []string{"alert", "prometheus", "query", "when", "token"}

func (d *decoder) conditions(n *yaml.Node, field string) []Condition {
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, field, "want a list of conditions, got %s", decode.KindName(n))
		return nil
	}
	var out []Condition
	if d.conditionAt == nil {
		d.conditionAt = map[string][]*yaml.Node{}
	}
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		if c.Kind == yaml.MappingNode {
			if cond, ok := d.prometheusCondition(c, f); ok {
				out = append(out, cond)
				d.conditionAt[field] = append(d.conditionAt[field], c)
			}
			continue
		}
		s := d.Str(c, f)
		if s == "" {
			continue
		}
		cond, err := ParseCondition(s)
		if err != nil {
			d.Errorf(c, f, "%v", err)
			continue
		}
		out = append(out, cond)
		d.conditionAt[field] = append(d.conditionAt[field], c)
	}
	return out
}

// conditionNode is the node of the i-th condition read from field, and
// its field name with the index the file gives it.
func (d *decoder) conditionNode(list *yaml.Node, field string, i int) (*yaml.Node, string) {
	if at := d.conditionAt[field]; i < len(at) {
		for j, c := range list.Content {
			if c == at[i] {
				return c, fmt.Sprintf("%s[%d]", field, j)
			}
		}
	}
	return list.Content[min(i, len(list.Content)-1)], fmt.Sprintf("%s[%d]", field, i)
}

// prometheusCondition reads a stop condition on a Prometheus: {alert:
// NAME, prometheus: URL} (it holds while the alert fires) or {prometheus:
// URL, query: PROMQL, when: "> 5 for 10s"} (while a series of the query
// meets when).
func (d *decoder) prometheusCondition(n *yaml.Node, field string) (Condition, bool) {
	f := d.Mapping(n, field, stopKeys...)
	c := Condition{}
	url := f.Get("prometheus")
	if url == nil {
		d.Errorf(n, field+".prometheus", "required: the Prometheus server's URL, e.g. http://127.0.0.1:9090")
		return c, false
	}
	c.Prometheus = d.Str(url, field+".prometheus")
	if !strings.HasPrefix(c.Prometheus, "http://") && !strings.HasPrefix(c.Prometheus, "https://") {
		d.Errorf(url, field+".prometheus", "want an http:// or https:// URL, got %q", c.Prometheus)
	}
	if t := f.Get("token"); t != nil {
		c.Token = d.Str(t, field+".token")
	}
	alert, query := f.Get("alert"), f.Get("query")
	switch {
	case alert != nil && query != nil:
		d.Errorf(n, field, "an alert or a query, not both")
		return c, false
	case alert != nil:
		c.Metric, c.Alert = "alert", d.Str(alert, field+".alert")
		c.Text = fmt.Sprintf("alert %s firing", c.Alert)
		if w := f.Get("when"); w != nil {
			d.Errorf(w, field+".when", "an alert holds while it fires: no when")
		}
		return c, true
	case query != nil:
		c.Metric, c.Query = "query", d.Str(query, field+".query")
		w := f.Get("when")
		if w == nil {
			d.Errorf(n, field+".when", "required: when the query stops the run, e.g. when: \"> 5 for 10s\"")
			return c, false
		}
		when := d.Str(w, field+".when")
		op, rest, _ := strings.Cut(strings.TrimSpace(when), " ")
		rest = strings.TrimSpace(rest)
		val, forText, hasFor := strings.Cut(rest, " for ")
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !slices.Contains(ops, op) || err != nil {
			d.Errorf(w, field+".when", "want OP VALUE [for DURATION], e.g. \"> 5 for 10s\"; got %q", when)
			return c, false
		}
		c.Op, c.Value = op, v
		if hasFor {
			if c.For, err = time.ParseDuration(strings.TrimSpace(forText)); err != nil || c.For <= 0 {
				d.Errorf(w, field+".when", "'for' needs a positive duration such as 10s; got %q", forText)
			}
		}
		c.Text = fmt.Sprintf("query %s %s", c.Query, when)
		return c, true
	}
	d.Errorf(n, field, "want alert: NAME or query: PROMQL (with prometheus: URL), or a condition such as error_rate > 50%% for 5s")
	return c, false
}

func (d *decoder) steadyState(n *yaml.Node) []Check { return d.checks(n, "steady_state") }

// checks reads a list of conditions and probes at field.
func (d *decoder) checks(n *yaml.Node, at string) []Check {
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, at, "want a list of conditions and probes, got %s", decode.KindName(n))
		return nil
	}
	var out []Check
	for i, c := range n.Content {
		field := fmt.Sprintf("%s[%d]", at, i)
		ch := Check{Pos: pos(c), Phases: Phases}
		if c.Kind == yaml.ScalarNode && strings.HasPrefix(strings.TrimSpace(c.Value), "ready_pods(") {
			p, err := probe.ParseReadyPods(c.Value)
			if err != nil {
				d.Errorf(c, field, "%v", err)
				continue
			}
			ch.Probe = p
			out = append(out, ch)
			continue
		}
		if c.Kind == yaml.ScalarNode {
			cond, err := ParseCondition(c.Value)
			if err != nil {
				d.Errorf(c, field, "%v", err)
				continue
			}
			ch.Condition = &cond
			out = append(out, ch)
			continue
		}
		f := d.Mapping(c, field, checkKeys...)
		if v := f.Get("phases"); v != nil {
			ch.Phases = d.StrList(v, field+".phases", true)
			for j, p := range ch.Phases {
				if !slices.Contains(Phases, p) {
					d.Errorf(v, fmt.Sprintf("%s.phases[%d]", field, j), "unknown phase %q%s", p, decode.Suggest(p, Phases))
				}
			}
		}
		cond, pn := f.Get("condition"), f.Get("probe")
		switch {
		case cond != nil && pn != nil:
			d.Errorf(c, field, "an entry is a condition or a probe, not both")
		case f.Get("alert") != nil:
			// Holds while the alert is not firing: a probe of its own kind.
			ch.Probe = &Probe{Kind: "alert", Alert: d.Str(f.Get("alert"), field+".alert")}
			if u := f.Get("prometheus"); u != nil {
				ch.Probe.URL = d.Str(u, field+".prometheus")
			} else {
				d.Errorf(c, field+".prometheus", "required with alert: the Prometheus server's URL")
			}
			if t := f.Get("token"); t != nil {
				ch.Probe.Token = d.Str(t, field+".token")
			}
		case cond != nil && strings.HasPrefix(strings.TrimSpace(cond.Value), "ready_pods("):
			p, err := probe.ParseReadyPods(cond.Value)
			if err != nil {
				d.Errorf(cond, field+".condition", "%v", err)
			}
			ch.Probe = p
		case cond != nil:
			parsed, err := ParseCondition(d.Str(cond, field+".condition"))
			if err != nil {
				d.Errorf(cond, field+".condition", "%v", err)
			}
			ch.Condition = &parsed
		case pn != nil:
			ch.Probe = probe.Decode(d.Decoder, pn, f, field)
			if t := f.Get("token"); t != nil {
				ch.Probe.Token = d.Str(t, field+".token")
			}
		default:
			d.Errorf(c, field, "want a condition (error_rate < 1%%) or probe: (GET URL, tcp HOST:PORT, command: [...], prometheus: URL)")
		}
		if v := f.Get("name"); v != nil && ch.Probe != nil {
			ch.Probe.Name = d.Str(v, field+".name")
		} else if v != nil {
			d.Errorf(v, field+".name", "only a probe has a name (conditions are named by what they say)")
		}
		if ch.Probe != nil && ch.Probe.Kind == "alert" && ch.Probe.Name == "" {
			ch.Probe.Name = ch.Probe.Alert
		}
		if v := f.Get("prometheus"); v != nil && (ch.Probe == nil || ch.Probe.Kind != "alert") {
			d.Errorf(v, field+".prometheus", "prometheus: goes with alert: here (a query is probe: {prometheus: URL} with query:)")
		}
		out = append(out, ch)
	}
	return out
}

// hostPort reports whether s is HOST:PORT with a port number, or holds a
// reference that setup fills in ({NAME.addr}, HOST:{NAME.port}).
func hostPort(s string) bool {
	if strings.Contains(s, "{") {
		return true
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// OffLoopback lists the addresses the experiment reaches that are not on
// this machine's loopback; references to its own targets ({NAME.addr})
// count as loopback.
func (x *Experiment) OffLoopback() []string {
	var out []string
	check := func(what, addr string) {
		if strings.Contains(addr, "{") {
			return // {T.port} and the like: a target of this run, on loopback
		}
		host := addr
		if u, err := url.Parse(addr); err == nil && u.Host != "" {
			host = u.Hostname()
		} else if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		}
		if host == "localhost" {
			return
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return
		}
		out = append(out, what+" "+addr)
	}
	for _, t := range x.Targets {
		if p := t.Proxy; p != nil {
			if p.API != "" {
				check("proxy API", p.API)
			} else {
				check("proxy listen", p.Listen)
				check("proxy upstream", p.Upstream)
			}
		}
		if p := t.Pods; p != nil {
			out = append(out, "pods "+p.Selector+" in namespace "+p.Namespace+" (a Kubernetes cluster)")
		}
		if d := t.DNS; d != nil {
			check("dns listen", d.Listen)
			if d.Upstream != "" {
				check("dns upstream", d.Upstream)
			}
		}
	}
	if x.Traffic != nil {
		for _, r := range x.Traffic.Requests {
			for _, a := range requestAddrs(r) {
				check("traffic", a)
			}
		}
	}
	for _, c := range x.SteadyState {
		if p := c.Probe; p != nil {
			switch p.Kind {
			case "tcp":
				check("probe", p.Address)
			case "http", "prometheus", "alert":
				check("probe", p.URL)
			}
		}
	}
	for _, c := range x.StopWhen {
		if c.Prometheus != "" {
			check("stop condition's prometheus", c.Prometheus)
		}
	}
	return out
}
