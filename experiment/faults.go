package experiment

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faultline/faultline/internal/decode"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/stress"
)

// faultFields are a fault's keys beside its action.
var faultFields = []string{"name", "target", "start", "duration", "select", "direction", "toxicity", "irreversible", "allow_host_network", "lease"}

func (d *decoder) faults(n *yaml.Node) []Fault {
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, "faults", "want a list of faults, got %s", decode.KindName(n))
		return nil
	}
	var out []Fault
	names := map[string]bool{}
	actions := d.actionKeys()
	for i, c := range n.Content {
		field := fmt.Sprintf("faults[%d]", i)
		f := d.Mapping(c, field, append(slices.Clone(faultFields), actions...)...)
		ft := Fault{Pos: pos(c), Select: Selection{Mode: "ALL"}, Direction: "downstream", Toxicity: 1}
		if v := f.Get("name"); v != nil {
			ft.Name = d.Str(v, field+".name")
			if names[ft.Name] {
				d.Errorf(v, field+".name", "%q names two faults", ft.Name)
			}
			names[ft.Name] = true
		} else {
			d.Errorf(c, field+".name", "required")
		}
		if v := f.Get("target"); v != nil {
			ft.Target = d.Str(v, field+".target")
		}
		if v := f.Get("start"); v != nil {
			ft.Start = d.Duration(v, field+".start")
			if ft.Start < 0 {
				d.Errorf(v, field+".start", "must be >= 0, got %s", v.Value)
			}
		}
		if v := f.Get("duration"); v != nil {
			ft.Duration = d.Positive(v, field+".duration")
		}
		if v := f.Get("select"); v != nil {
			ft.Select = d.selection(v, field+".select")
		}
		if v := f.Get("direction"); v != nil {
			ft.Direction = d.Str(v, field+".direction")
			if !slices.Contains([]string{"upstream", "downstream", "both"}, ft.Direction) {
				d.Errorf(v, field+".direction", "want upstream, downstream or both, got %q", ft.Direction)
			}
		}
		if v := f.Get("toxicity"); v != nil {
			x := d.Number(v, field+".toxicity")
			if x < 0 || x > 1 {
				d.Errorf(v, field+".toxicity", "must be between 0 and 1, got %v", v.Value)
			}
			ft.Toxicity = float32(x)
		}
		if v := f.Get("irreversible"); v != nil {
			ft.Irreversible = d.Boolean(v, field+".irreversible")
		}
		if v := f.Get("allow_host_network"); v != nil {
			ft.AllowHostNetwork = d.Boolean(v, field+".allow_host_network")
		}
		if v := f.Get("lease"); v != nil {
			ft.Lease = d.Duration(v, field+".lease")
			if _, err := time.ParseDuration(v.Value); err == nil && ft.Lease < time.Second {
				d.Errorf(v, field+".lease", "want at least 1s: the runner renews a lease a few times within it")
			}
		}
		var given []*yaml.Node
		for _, k := range f.Keys {
			if slices.Contains(actions, k.Value) {
				given = append(given, k)
			}
		}
		switch len(given) {
		case 0:
			// A misspelt action ("latncy") has its own "did you mean" already.
			if !slices.ContainsFunc(decode.UnknownKeys(c, append(slices.Clone(faultFields), actions...)), func(k string) bool { return decode.CloseTo(k, actions) }) {
				d.Errorf(c, field, "no action: give one of %s", strings.Join(actions, ", "))
			}
		case 1:
			ft.Action = d.action(given[0].Value, f.Get(given[0].Value), field+"."+given[0].Value)
			if _, loss := ft.Action.(PacketLoss); loss && f.Get("direction") == nil {
				ft.Direction = "both" // packets are lost both ways unless said
			}
		default:
			d.Errorf(given[1], field, "one action per fault, got %s and %s", given[0].Value, given[1].Value)
		}
		out = append(out, ft)
	}
	return out
}

var (
	countRE   = regexp.MustCompile(`^COUNT\((\d+)\)$`)
	percentRE = regexp.MustCompile(`^PERCENT\((\d+(?:\.\d+)?)\)$`)
)

// selection reads ALL, COUNT(n), PERCENT(n), or {tags, count, percent}.
func (d *decoder) selection(n *yaml.Node, field string) Selection {
	s := Selection{Mode: "ALL"}
	if n.Kind == yaml.ScalarNode {
		return d.selector(n, n.Value, field)
	}
	f := d.Mapping(n, field, selectKeys...)
	if v := f.Get("tags"); v != nil {
		s.Tags = map[string]string{}
		tf := d.Mapping(v, field+".tags")
		for _, k := range tf.Keys {
			s.Tags[k.Value] = d.Str(tf.Get(k.Value), field+".tags."+k.Value)
		}
	}
	c, p := f.Get("count"), f.Get("percent")
	switch {
	case c != nil && p != nil:
		d.Errorf(n, field, "count or percent, not both")
	case c != nil:
		s.Mode, s.N = "COUNT", d.Integer(c, field+".count")
		if s.N < 1 {
			d.Errorf(c, field+".count", "must be at least 1")
		}
	case p != nil:
		s.Mode, s.N = "PERCENT", d.Integer(p, field+".percent")
		if s.N < 1 || s.N > 100 {
			d.Errorf(p, field+".percent", "must be 1 to 100")
		}
	}
	return s
}

// selector reads ALL, COUNT(n) or PERCENT(n).
func (d *decoder) selector(n *yaml.Node, v, field string) Selection {
	switch {
	case v == "ALL":
		return Selection{Mode: "ALL"}
	case countRE.MatchString(v):
		k, _ := strconv.Atoi(countRE.FindStringSubmatch(v)[1])
		if k < 1 {
			d.Errorf(n, field, "COUNT needs at least 1")
		}
		return Selection{Mode: "COUNT", N: k}
	case percentRE.MatchString(v):
		k, err := strconv.Atoi(percentRE.FindStringSubmatch(v)[1])
		if err != nil || k < 1 || k > 100 {
			d.Errorf(n, field, "PERCENT takes a whole number from 1 to 100, got %q", v)
		}
		return Selection{Mode: "PERCENT", N: k}
	}
	d.Errorf(n, field, "want ALL, COUNT(n), PERCENT(n) or {tags: {...}, count|percent: n}, got %q", v)
	return Selection{Mode: "ALL"}
}

// actionDecoders read each built-in action's value: proxy toxics take
// the API's attribute names with Go durations for times.
var actionDecoders = map[string]func(d *decoder, n *yaml.Node, field string) Action{
	"latency":      (*decoder).latencyAction,
	"bandwidth":    (*decoder).bandwidthAction,
	"slow_close":   (*decoder).slowCloseAction,
	"timeout":      (*decoder).timeoutAction,
	"reset_peer":   (*decoder).resetPeerAction,
	"slicer":       (*decoder).slicerAction,
	"limit_data":   (*decoder).limitDataAction,
	"http_status":  (*decoder).httpStatusAction,
	"http_latency": (*decoder).httpLatencyAction,
	"http_body":    (*decoder).httpBodyAction,
	"http_header":  (*decoder).httpHeaderAction,
	"pod_kill":     (*decoder).podKillAction,
	"scale":        (*decoder).scaleAction,
	"cordon":       (*decoder).cordonAction,
	"cpu":          (*decoder).cpuAction,
	"memory":       (*decoder).memoryAction,
	"disk_fill":    (*decoder).diskFillAction,
	"connections":  (*decoder).connectionsAction,
	"dns":          (*decoder).dnsAction,
	"down":         (*decoder).downAction,
	"stop":         (*decoder).stopAction,
	"kill":         (*decoder).killAction,
	"exec":         (*decoder).execAction,
	"partition":    (*decoder).partitionAction,
	"packet_loss":  (*decoder).packetLossAction,
}

// action reads a fault's action: a built-in one from the table, one of a
// family registered from outside through its decoder.
func (d *decoder) action(key string, n *yaml.Node, field string) Action {
	if dec, ok := actionDecoders[key]; ok {
		return dec(d, n, field)
	}
	return d.actions[key](newNode(d.Decoder, n, field))
}

// toxic checks a proxy effect's values and makes it the action.
func (d *decoder) toxic(n *yaml.Node, field string, e proxy.Effect) Action {
	if err := proxy.Validate(e); err != nil {
		d.Errorf(n, field, "%v", err)
	}
	return ProxyToxic{Effect: e}
}

// dur reads key of f as a duration, 0 when not given.
func (d *decoder) dur(f fields, field, k string) time.Duration {
	if v := f.Get(k); v != nil {
		return d.Duration(v, field+"."+k)
	}
	return 0
}

// num reads key of f as a whole number, 0 when not given.
func (d *decoder) num(f fields, field, k string) int64 {
	if v := f.Get(k); v != nil {
		return int64(d.Integer(v, field+"."+k))
	}
	return 0
}

func (d *decoder) latencyAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "delay", "jitter")
	if f.Get("delay") == nil {
		d.Errorf(n, field+".delay", "required, e.g. latency: {delay: 1s, jitter: 100ms}")
	}
	return d.toxic(n, field, proxy.Latency{Delay: d.dur(f, field, "delay"), Jitter: d.dur(f, field, "jitter")})
}

func (d *decoder) bandwidthAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "rate")
	if f.Get("rate") == nil {
		d.Errorf(n, field+".rate", "required: KB/s, e.g. bandwidth: {rate: 100}")
	}
	return d.toxic(n, field, proxy.Bandwidth{Rate: d.num(f, field, "rate")})
}

func (d *decoder) slowCloseAction(n *yaml.Node, field string) Action {
	return d.toxic(n, field, proxy.SlowClose{Delay: d.dur(d.Mapping(n, field, "delay"), field, "delay")})
}

func (d *decoder) timeoutAction(n *yaml.Node, field string) Action {
	return d.toxic(n, field, proxy.Timeout{Timeout: d.dur(d.Mapping(n, field, "timeout"), field, "timeout")})
}

func (d *decoder) resetPeerAction(n *yaml.Node, field string) Action {
	return d.toxic(n, field, proxy.ResetPeer{Timeout: d.dur(d.Mapping(n, field, "timeout"), field, "timeout")})
}

func (d *decoder) slicerAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "average_size", "size_variation", "delay")
	return d.toxic(n, field, proxy.Slicer{AverageSize: int(d.num(f, field, "average_size")), SizeVariation: int(d.num(f, field, "size_variation")), Delay: d.dur(f, field, "delay")})
}

func (d *decoder) limitDataAction(n *yaml.Node, field string) Action {
	return d.toxic(n, field, proxy.LimitData{Bytes: d.num(d.Mapping(n, field, "bytes"), field, "bytes")})
}

func (d *decoder) httpStatusAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "status", "body", "retry_after", "first", "every", "method", "path")
	if f.Get("status") == nil {
		d.Errorf(n, field+".status", "required, e.g. http_status: {status: 503, path: /charge}")
	}
	hs := proxy.HTTPStatus{HTTPMatch: d.httpMatch(f, field), Status: int(d.num(f, field, "status")), Body: d.optStr(f, "body", field),
		RetryAfter: int(d.num(f, field, "retry_after")), First: int(d.num(f, field, "first")), Every: int(d.num(f, field, "every"))}
	if f.Get("status") == nil {
		hs.Status = http.StatusServiceUnavailable // reported as required above, once
	}
	return d.toxic(n, field, hs)
}

func (d *decoder) httpLatencyAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "delay", "jitter", "phase", "method", "path")
	if f.Get("delay") == nil {
		d.Errorf(n, field+".delay", "required, e.g. http_latency: {delay: 2s, path: /charge}")
	}
	return d.toxic(n, field, proxy.HTTPLatency{HTTPMatch: d.httpMatch(f, field), Delay: d.dur(f, field, "delay"), Jitter: d.dur(f, field, "jitter"), Phase: d.optStr(f, "phase", field)})
}

func (d *decoder) httpBodyAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "null", "drop", "rename", "retype", "garble", "truncate", "method", "path")
	b := proxy.HTTPBody{HTTPMatch: d.httpMatch(f, field), Garble: int(d.num(f, field, "garble")), Truncate: -1,
		Null: d.optList(f, "null", field), Drop: d.optList(f, "drop", field), Retype: d.optList(f, "retype", field), Rename: d.optMap(f, "rename", field)}
	if f.Get("truncate") != nil {
		b.Truncate = int(d.num(f, field, "truncate"))
	}
	return d.toxic(n, field, b)
}

func (d *decoder) httpHeaderAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "drop", "set", "add", "phase", "method", "path")
	return d.toxic(n, field, proxy.HTTPHeader{HTTPMatch: d.httpMatch(f, field), Phase: d.optStr(f, "phase", field),
		Drop: d.optList(f, "drop", field), Set: d.optMap(f, "set", field), Add: d.optMap(f, "add", field)})
}

func (d *decoder) podKillAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "grace")
	k := PodKill{}
	if v := f.Get("grace"); v != nil {
		switch g := d.Str(v, field+".grace"); g {
		case "pod":
			k.PodGrace = true
		case "0", "0s":
		default:
			d.Errorf(v, field+".grace", "want 0 (kill at once, the default) or pod (each pod's own grace period), got %q", g)
		}
	}
	return k
}

func (d *decoder) scaleAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "kind", "name", "replicas")
	sc := Scale{Resource: "deployment"}
	if v := f.Get("kind"); v != nil {
		sc.Resource = strings.ToLower(d.Str(v, field+".kind"))
		if sc.Resource != "deployment" && sc.Resource != "statefulset" {
			d.Errorf(v, field+".kind", "want deployment or statefulset, got %q", v.Value)
		}
	}
	if v := f.Get("name"); v != nil {
		sc.Name = d.Str(v, field+".name")
	} else {
		d.Errorf(n, field+".name", "required: the Deployment or StatefulSet to scale")
	}
	if v := f.Get("replicas"); v != nil {
		if sc.Replicas = d.Integer(v, field+".replicas"); sc.Replicas < 0 {
			d.Errorf(v, field+".replicas", "must be >= 0")
		}
	} else {
		d.Errorf(n, field+".replicas", "required")
	}
	return sc
}

func (d *decoder) cordonAction(n *yaml.Node, field string) Action {
	d.Mapping(n, field)
	return Cordon{}
}

func (d *decoder) cpuAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "workers", "load")
	w, l := int64(1), int64(100)
	if f.Get("workers") != nil {
		w = d.num(f, field, "workers")
	}
	if f.Get("load") != nil {
		l = d.num(f, field, "load")
	}
	if w < 1 || l < 1 || l > 100 {
		d.Errorf(n, field, "want workers >= 1 and load (percent) from 1 to 100")
	}
	return Stress{Resource: "cpu", Args: []string{"--workers", strconv.FormatInt(w, 10), "--load", strconv.FormatInt(l, 10)}}
}

func (d *decoder) memoryAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "size", "rate")
	st := Stress{Resource: "memory"}
	if v := f.Get("size"); v == nil {
		d.Errorf(n, field+".size", "required, e.g. memory: {size: 512MiB}")
	} else if sz := d.size(v, field+".size"); sz != "" {
		st.Args = append(st.Args, "--size", sz)
	}
	if v := f.Get("rate"); v != nil {
		if r := d.size(v, field+".rate"); r != "" {
			st.Args = append(st.Args, "--rate", r)
		}
	}
	return st
}

func (d *decoder) diskFillAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "path", "free", "fill", "allow_root")
	st := Stress{Resource: "disk"}
	if v := f.Get("path"); v == nil {
		d.Errorf(n, field+".path", "required: a directory on the file system to fill")
	} else {
		st.Path = d.Str(v, field+".path")
		st.Args = append(st.Args, "--path", st.Path)
	}
	free, fill := f.Get("free"), f.Get("fill")
	switch {
	case (free == nil) == (fill == nil):
		d.Errorf(n, field, "give free (a size or a percentage: 5%%) or fill (a size), one of them")
	case free != nil && strings.HasSuffix(free.Value, "%"):
		p, err := strconv.ParseFloat(strings.TrimSuffix(free.Value, "%"), 64)
		if err != nil || p <= 0 || p >= 100 {
			d.Errorf(free, field+".free", "want a percentage between 0 and 100, got %q", free.Value)
		}
		st.Args = append(st.Args, "--free", free.Value)
	case free != nil:
		if sz := d.size(free, field+".free"); sz != "" {
			st.Args = append(st.Args, "--free", sz)
		}
	default:
		if sz := d.size(fill, field+".fill"); sz != "" {
			st.Args = append(st.Args, "--fill", sz)
		}
	}
	if v := f.Get("allow_root"); v != nil && d.Boolean(v, field+".allow_root") {
		st.Args = append(st.Args, "--allow-root")
	}
	return st
}

func (d *decoder) connectionsAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "address", "count", "mode", "protocol", "dsn")
	st := Stress{Resource: "connections"}
	count := int64(10)
	if f.Get("count") != nil {
		count = d.num(f, field, "count")
	}
	if count < 1 {
		d.Errorf(n, field+".count", "must be at least 1")
	}
	st.Args = []string{"--count", strconv.FormatInt(count, 10)}
	protocol := "tcp"
	if v := f.Get("protocol"); v != nil {
		protocol = d.Str(v, field+".protocol")
	}
	switch protocol {
	case "tcp":
		if v := f.Get("address"); v == nil {
			d.Errorf(n, field+".address", "required: HOST:PORT to connect to")
		} else {
			st.Args = append(st.Args, "--address", d.Str(v, field+".address"))
		}
	case "postgres":
		if v := f.Get("dsn"); v == nil {
			d.Errorf(n, field+".dsn", "required with protocol: postgres, e.g. postgres://app@127.0.0.1:5432/app")
		} else {
			st.Args = append(st.Args, "--protocol", "postgres", "--dsn", d.Str(v, field+".dsn"))
		}
	default:
		d.Errorf(f.Get("protocol"), field+".protocol", "want tcp or postgres, got %q", protocol)
	}
	if v := f.Get("mode"); v != nil {
		mode := d.Str(v, field+".mode")
		if mode != "idle" && mode != "slow" {
			d.Errorf(v, field+".mode", "want idle or slow, got %q", mode)
		}
		st.Args = append(st.Args, "--mode", mode)
	}
	return st
}

func (d *decoder) dnsAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "rules")
	v := f.Get("rules")
	if v == nil {
		d.Errorf(n, field+".rules", "required, e.g. dns: {rules: [\"payments.*=SERVFAIL\"]}")
		return DNS{}
	}
	rules := d.StrList(v, field+".rules", true)
	if _, err := dnsfault.ParseRules(rules); err != nil {
		d.Errorf(v, field+".rules", "%v", err)
	}
	return DNS{Rules: rules}
}

func (d *decoder) downAction(n *yaml.Node, field string) Action {
	d.Mapping(n, field)
	return Down{}
}

func (d *decoder) stopAction(n *yaml.Node, field string) Action {
	d.Mapping(n, field)
	return Stop{}
}

func (d *decoder) killAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "signal")
	k := Kill{Signal: "SIGKILL"}
	if v := f.Get("signal"); v != nil {
		k.Signal = d.signal(v, field+".signal")
	}
	return k
}

func (d *decoder) execAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "inject", "revert")
	x := Exec{}
	if v := f.Get("inject"); v != nil {
		x.Inject = d.StrList(v, field+".inject", false)
	}
	if v := f.Get("revert"); v != nil {
		x.Revert = d.StrList(v, field+".revert", false)
	}
	if len(x.Inject) == 0 || len(x.Revert) == 0 {
		d.Errorf(n, field, "needs inject: [cmd, ...] and revert: [cmd, ...]")
	}
	return x
}

// size reads a size such as 512MiB and returns it as written, or "".
func (d *decoder) size(n *yaml.Node, field string) string {
	v := d.Str(n, field)
	if _, err := stress.ParseSize(v); err != nil {
		d.Errorf(n, field, "%v", err)
		return ""
	}
	return v
}

// HTTPAction reports whether a fault's action is an HTTP toxic: its proxy
// then reads HTTP from the start.
func HTTPAction(a Action) bool {
	t, ok := a.(ProxyToxic)
	return ok && strings.HasPrefix(t.Effect.Type(), "http_")
}

func (d *decoder) httpMatch(f fields, field string) proxy.HTTPMatch {
	return proxy.HTTPMatch{Method: d.optStr(f, "method", field), Path: d.optStr(f, "path", field)}
}

func (d *decoder) optStr(f fields, k, field string) string {
	if v := f.Get(k); v != nil {
		return d.Str(v, field+"."+k)
	}
	return ""
}

func (d *decoder) optList(f fields, k, field string) []string {
	if v := f.Get(k); v != nil {
		return d.StrList(v, field+"."+k, true)
	}
	return nil
}

func (d *decoder) optMap(f fields, k, field string) map[string]string {
	v := f.Get(k)
	if v == nil {
		return nil
	}
	m := map[string]string{}
	mf := d.Mapping(v, field+"."+k)
	for _, key := range mf.Keys {
		m[key.Value] = d.Str(mf.Get(key.Value), field+"."+k+"."+key.Value)
	}
	return m
}

// Signals a kill fault may send.
var Signals = process.Signals

// signal reads a signal's name: SIGTERM, TERM or term.
func (d *decoder) signal(n *yaml.Node, field string) string {
	sig, ok := process.ParseSignal(d.Str(n, field))
	if !ok {
		d.Errorf(n, field, "unknown signal %q%s", sig, decode.Suggest(sig, process.SignalNames()))
	}
	return sig
}

// defaultReadyPods gives the ready_pods probes among checks without a
// namespace pods' namespace (else "default"), and pods' kubeconfig.
func defaultReadyPods(checks []Check, pods *PodsTarget) {
	for _, c := range checks {
		if c.Probe == nil || c.Probe.Kind != "ready_pods" {
			continue
		}
		if pods != nil {
			if c.Probe.Namespace == "" {
				c.Probe.Namespace = pods.Namespace
			}
			c.Probe.Kubeconfig = pods.Kubeconfig
		}
		if c.Probe.Namespace == "" {
			c.Probe.Namespace = "default"
		}
	}
}

// check makes the cross-field checks once every field is read.
func (d *decoder) check(x *Experiment, root *yaml.Node, f fields) {
	targets := map[string]*Target{}
	for i := range x.Targets {
		targets[x.Targets[i].Name] = &x.Targets[i]
	}
	// ready_pods without a namespace: the first pods target's cluster and
	// namespace.
	var pods *PodsTarget
	for _, t := range x.Targets {
		if t.Pods != nil {
			pods = t.Pods
			break
		}
	}
	defaultReadyPods(x.SteadyState, pods)
	d.checkConditions(x, f)
	latestEnd := d.checkFaults(x, root, f.Get("faults"), targets)
	d.checkIntercepts(x, root, targets)
	d.checkRefs(root, "", targets)
	d.checkDurations(x, root, latestEnd)
}

// checkConditions checks that conditions have traffic to measure and
// name requests that are there.
func (d *decoder) checkConditions(x *Experiment, f fields) {
	requests := map[string]bool{}
	if x.Traffic != nil {
		for _, r := range x.Traffic.Requests {
			requests[r.Name] = true
		}
	}
	probes := map[string]bool{}
	var probeNames []string
	if n := f.Get("steady_state"); n != nil && n.Kind == yaml.SequenceNode {
		for i, ch := range x.SteadyState {
			if ch.Probe == nil || ch.Probe.Name == "" {
				continue
			}
			if probes[ch.Probe.Name] && i < len(n.Content) {
				d.Errorf(n.Content[i], fmt.Sprintf("steady_state[%d].name", i), "%q names two probes", ch.Probe.Name)
			}
			probes[ch.Probe.Name] = true
			probeNames = append(probeNames, ch.Probe.Name)
		}
	}
	checkCond := func(c Condition, at *yaml.Node, field string) {
		switch c.Measures() {
		case "traffic":
			if x.Traffic == nil {
				d.Errorf(at, field, "%q measures the traffic, but the experiment has no traffic section (a stop condition may be an alert, a query or a probe's: probe_success of NAME < 90%%)", c.Text)
			}
			if c.Of != "" && !requests[c.Of] {
				d.Errorf(at, field, "no request is named %q (give requests a name: to scope a condition)", c.Of)
			}
		case "probes":
			if !probes[c.Of] {
				d.Errorf(at, field, "no probe is named %q%s (give a steady_state probe a name: to measure it)", c.Of, decode.Suggest(c.Of, probeNames))
			}
		}
	}
	if n := f.Get("steady_state"); n != nil && n.Kind == yaml.SequenceNode {
		for i, ch := range x.SteadyState {
			if ch.Condition != nil && i < len(n.Content) {
				checkCond(*ch.Condition, n.Content[i], fmt.Sprintf("steady_state[%d]", i))
			}
		}
	}
	if n := f.Get("stop_when"); n != nil && n.Kind == yaml.SequenceNode {
		for i, c := range x.StopWhen {
			at, field := d.conditionNode(n, "stop_when", i)
			if c.Baseline {
				d.Errorf(at, field, "a stop condition cannot use the baseline (it must be ready before the baseline ends): give a value")
			}
			checkCond(c, at, field)
		}
	}
}

// checkFaults checks each fault against its target and the inject
// phase, and returns the latest end among faults with a duration.
func (d *decoder) checkFaults(x *Experiment, root, fn *yaml.Node, targets map[string]*Target) time.Duration {
	var latestEnd time.Duration
	for i, ft := range x.Faults {
		at := root
		if fn != nil && i < len(fn.Content) {
			at = fn.Content[i]
		}
		field := fmt.Sprintf("faults[%d]", i)
		if ft.Duration > 0 {
			latestEnd = max(latestEnd, addDurations(ft.Start, ft.Duration))
		}
		if x.Inject > 0 && ft.Start >= x.Inject {
			d.Errorf(at, field+".start", "starts at %v, after the inject phase ends (%v)", ft.Start, x.Inject)
		}
		if ft.Action == nil {
			continue
		}
		t, ok := targets[ft.Target]
		switch {
		case ft.Target == "":
			_, isExec := ft.Action.(Exec)
			_, isStress := ft.Action.(Stress)
			if !isExec && !isStress && builtin(ft.Action) {
				d.Errorf(at, field+".target", "required")
			}
		case !ok:
			names := slices.Sorted(maps.Keys(targets))
			d.Errorf(valueOf(at, "target"), field+".target", "no target named %q%s", ft.Target, decode.Suggest(ft.Target, names))
		default:
			d.checkFaultTarget(ft, t, at, field)
			if NetworkAction(ft.Action) {
				d.checkNetworkFault(ft, t, targets, at, field)
			}
		}
		if ft.Lease != 0 && inPods(ft, targets) == "" {
			d.Errorf(valueOf(at, "lease"), field+".lease", "only a fault inside a pod (partition, packet_loss, a stress, stop or kill on a pods target, a toxic or dns fault on an intercept from one) holds a lease")
		}
		if ft.AllowHostNetwork && !NetworkAction(ft.Action) {
			d.Errorf(valueOf(at, "allow_host_network"), field+".allow_host_network", "only a network fault (partition, packet_loss) acts in a network namespace")
		}
	}
	return latestEnd
}

// checkFaultTarget checks that a fault's action acts on its target's
// kind, and what it needs of it.
func (d *decoder) checkFaultTarget(ft Fault, t *Target, at *yaml.Node, field string) {
	switch a := ft.Action.(type) {
	case ProxyToxic, Down:
		if t.Proxy == nil && t.Intercept == nil {
			d.Errorf(at, field, "%s acts on a proxy or an intercept, but target %q is neither", a.Kind(), t.Name)
		}
	case PodKill, Scale, Cordon:
		if t.Pods == nil {
			d.Errorf(at, field, "%s acts on a pods target (namespace and selector), but target %q is not one", a.Kind(), t.Name)
		}
	case DNS:
		if t.DNS == nil {
			d.Errorf(at, field, "dns acts on a dns target (a resolver the run starts), but target %q is not one", t.Name)
		}
	case Stress:
		if t.Pods == nil {
			// Only an agent in each pod confines a stress; anywhere else it
			// takes the resource from the whole machine, and a target that
			// names a process or a proxy would say what it does not do.
			d.Errorf(at, field, "%s takes from the whole machine, whatever the target: only a pods target confines it (inside each selected pod); leave target out, or name a pods target", faultKey(a))
			break
		}
		if a.Resource == "disk" {
			d.Errorf(at, field, "disk_fill inside a pod would fill its agent's own container, not the app's volumes: not supported on a pods target")
		}
		if t.Pods.AgentImage == "" {
			d.Errorf(at, field, "%s inside the pods of %q needs an agent image: add agent_image: IMAGE to the target's pods, or run with --agent-image", faultKey(a), t.Name)
		}
	case Kill, Stop:
		if t.Pods != nil {
			if t.Pods.AgentImage == "" {
				d.Errorf(at, field, "%s inside the pods of %q needs an agent image: add agent_image: IMAGE to the target's pods, or run with --agent-image", a.Kind(), t.Name)
			}
			return
		}
		if t.Process == nil {
			d.Errorf(at, field, "%s acts on processes, but target %q is not a process (use down: {} to take a proxy down)", a.Kind(), t.Name)
			return
		}
		if _, isKill := a.(Kill); isKill && !t.Process.Launched() && len(t.Process.Restart) == 0 && !ft.Irreversible {
			d.Errorf(at, field, "killing %q cannot be undone: the run did not launch it and it has no restart: command; add restart: [...] to the target or irreversible: true to the fault", t.Name)
		}
	}
	if len(ft.Select.Tags) > 0 && t.Tags == nil && t.Pods == nil { // a pod's tags are its labels
		d.Errorf(at, field+".select.tags", "target %q has no tags", t.Name)
	}
}

// checkDurations fixes the inject phase's length and checks the run
// within max_duration.
func (d *decoder) checkDurations(x *Experiment, root *yaml.Node, latestEnd time.Duration) {
	if x.Inject == 0 {
		// Not when other problems are there: a misspelt duration would
		// cause this one too.
		faultErrs := slices.ContainsFunc(d.Errs(), func(e error) bool { return strings.HasPrefix(e.(*Error).Field, "faults") })
		if latestEnd == 0 && len(x.Faults) > 0 && !faultErrs {
			d.Errorf(root, "inject", "the inject phase has no end: give inject: DURATION, or a duration to at least one fault")
		}
		x.Inject = latestEnd
	}
	if total := addDurations(x.Baseline, x.Inject, x.Recovery); total > x.MaxDuration {
		sum := total.String()
		if total == math.MaxInt64 {
			sum = "more than " + (math.MaxInt64 * time.Duration(1)).Truncate(time.Hour).String()
		}
		d.Errorf(root, "max_duration", "baseline %v + inject %v + recovery %v = %s, over max_duration %v", x.Baseline, x.Inject, x.Recovery, sum, x.MaxDuration)
	}
}

// builtin reports whether an action is one of this package's, as
// opposed to one of a family registered from outside (whose decoder and
// family say what it needs).
func builtin(a Action) bool {
	switch a.(type) {
	case ProxyToxic, Down, Kill, Stop, Exec, DNS, Stress, PodKill, Scale, Cordon, Partition, PacketLoss:
		return true
	}
	return false
}

// addDurations adds durations that are each >= 0, saturating at the
// largest Duration instead of wrapping negative.
func addDurations(ds ...time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		if d > math.MaxInt64-sum {
			return math.MaxInt64
		}
		sum += d
	}
	return sum
}

// valueOf returns the value of key in the mapping n, or n itself when it
// has none: where an error about that field points.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	}
	return n
}

// addresses is how many addresses {NAME.addr} and the like can name on
// the target: one per launched instance, one for an embedded proxy or a
// dns resolver, none for the rest.
func (t *Target) addresses() int {
	switch {
	case t.Process != nil && t.Process.Launched():
		return t.Process.Instances
	case t.Proxy != nil && t.Proxy.API == "", t.DNS != nil && t.DNS.Intercept == nil:
		return 1
	}
	return 0
}

// RefPattern matches a reference to a target's address in a string:
// {NAME.port}, {NAME[i].port}, {NAME.addr}, {NAME.addrs}, {NAME.ip},
// {NAME[i].ip}; {host.ip} is the run's bridge's address.
var RefPattern = regexp.MustCompile(`\{([A-Za-z0-9_-]+)(?:\[(\d+)\])?\.(port|addr|addrs|ip)\}`)

// checkRefs reports references to targets that do not exist.
func (d *decoder) checkRefs(n *yaml.Node, field string, targets map[string]*Target) {
	if n.Kind == yaml.ScalarNode {
		for _, m := range RefPattern.FindAllStringSubmatch(n.Value, -1) {
			if m[0] == "{host.ip}" {
				continue
			}
			t, ok := targets[m[1]]
			if !ok {
				var names []string
				for name := range targets {
					names = append(names, name)
				}
				slices.Sort(names)
				d.Errorf(n, field, "%s: no target named %q%s", m[0], m[1], decode.Suggest(m[1], names))
				continue
			}
			switch addrs := t.addresses(); {
			case addrs == 0:
				d.Errorf(n, field, "%s: target %q has no address of its own (only launched processes, embedded proxies and dns resolvers that do not intercept do)", m[0], m[1])
			case m[2] != "":
				if i, _ := strconv.Atoi(m[2]); i >= addrs {
					d.Errorf(n, field, "%s: target %q has %d instance(s), numbered from 0", m[0], m[1], addrs)
				}
			}
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.checkRefs(n.Content[i+1], decode.Join(field, n.Content[i].Value), targets)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.checkRefs(c, fmt.Sprintf("%s[%d]", field, i), targets)
		}
	}
}

// InPods names the pods target inside whose pods a fault acts, through
// agents, or "": a network fault or a stress on a pods target, a toxic or
// down on an intercept from a pods target.
func (x *Experiment) InPods(f Fault) string {
	byName := map[string]*Target{}
	for i := range x.Targets {
		byName[x.Targets[i].Name] = &x.Targets[i]
	}
	return inPods(f, byName)
}

func inPods(f Fault, targets map[string]*Target) string {
	t := targets[f.Target]
	switch {
	case t == nil:
		return ""
	case t.Pods != nil:
		switch f.Action.(type) {
		case Stress, Kill, Stop, Partition, PacketLoss:
			return t.Name
		}
	case t.Intercept != nil:
		if from := targets[t.Intercept.From]; from != nil && from.Pods != nil {
			return from.Name
		}
	case t.DNS != nil && t.DNS.Intercept != nil:
		if from := targets[t.DNS.Intercept.From]; from != nil && from.Pods != nil {
			return from.Name
		}
	}
	return ""
}

// faultKey is the file's key of a stress action.
func faultKey(a Stress) string {
	switch a.Resource {
	case "disk":
		return "disk_fill"
	case "connections":
		return "connections"
	}
	return a.Resource
}
