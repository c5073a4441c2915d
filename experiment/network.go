package experiment

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/internal/decode"
	"github.com/faultline/faultline/netfault"
)

// Faults on the traffic that is already there (package netfault): a launched
// process may run in a network namespace of its own (network: isolated), and
// partition and packet_loss act in the network namespace of a process target.

// Network is the run's isolated network, the top-level network: key.
type Network struct {
	// Subnet is where isolated instances get their addresses; zero: a /24
	// inside 198.18.0.0/15 that nothing of the host's overlaps.
	Subnet netip.Prefix
}

// NetTo is where a network fault applies (its to: key): destinations
// (IP, CIDR, IP:PORT, CIDR:PORT, :PORT, after references are filled),
// process targets by name, and the process targets' instances that have
// every one of Tags.
type NetTo struct {
	Dests   []string
	Targets []string
	Tags    map[string]string
}

// String says it as the file does.
func (t NetTo) String() string {
	parts := append(slices.Clone(t.Targets), t.Dests...)
	if len(t.Tags) > 0 {
		var tags []string
		for _, k := range slices.Sorted(maps.Keys(t.Tags)) {
			tags = append(tags, k+"="+t.Tags[k])
		}
		parts = append(parts, "tags "+strings.Join(tags, ","))
	}
	return strings.Join(parts, ", ")
}

// Partition lets no packet pass between the target's network namespace and
// To, either way; with Reject the peer is refused at once (TCP RST, ICMP
// unreachable) instead of waiting for its timeout.
type Partition struct {
	To     NetTo
	Reject bool
}

// PacketLoss drops Percent % of the packets between the target's network
// namespace and To (of Protocol: tcp, udp or all), in the fault's
// direction (both by default).
type PacketLoss struct {
	Percent  int
	To       NetTo
	Protocol string
}

func (Partition) Kind() string  { return "partition" }
func (PacketLoss) Kind() string { return "packet_loss" }

// NetworkAction reports whether an action acts in a network namespace (it
// needs root and nf_tables).
func NetworkAction(a Action) bool {
	switch a.(type) {
	case Partition, PacketLoss:
		return true
	}
	return false
}

// UsesNetwork reports whether the experiment needs package netfault: an
// isolated target or a network fault.
func (x *Experiment) UsesNetwork() bool {
	for _, t := range x.Targets {
		if t.Process != nil && t.Process.Isolated {
			return true
		}
	}
	// A fault inside a pod is the agent's: this machine's kernel is not
	// involved.
	return slices.ContainsFunc(x.Faults, func(f Fault) bool {
		return NetworkAction(f.Action) && !slices.ContainsFunc(x.Targets, func(t Target) bool { return t.Name == f.Target && t.Pods != nil })
	})
}

var networkKeys = []string{"subnet"}

func (d *decoder) network(n *yaml.Node) Network {
	f := d.Mapping(n, "network", networkKeys...)
	var nw Network
	if v := f.Get("subnet"); v != nil {
		s := d.Str(v, "network.subnet")
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			d.Errorf(v, "network.subnet", "want an IPv4 CIDR such as 198.18.7.0/24, got %q", s)
		case !p.Addr().Is4():
			d.Errorf(v, "network.subnet", "want an IPv4 CIDR, got %q", s)
		case p.Bits() > 29:
			d.Errorf(v, "network.subnet", "%q is too small: a /29 or larger holds the bridge and the instances", s)
		default:
			nw.Subnet = p.Masked()
		}
	}
	return nw
}

// isolation reads a process target's network: key: only "isolated".
func (d *decoder) isolation(n *yaml.Node, field string) bool {
	v := d.Str(n, field)
	if v != "isolated" {
		d.Errorf(n, field, "want isolated (a network namespace of its own per instance), got %q", v)
		return false
	}
	return true
}

// netTo reads a to: key: a destination or target name, a list of them, or
// {tags: {...}}.
func (d *decoder) netTo(n *yaml.Node, field string) NetTo {
	var to NetTo
	add := func(v *yaml.Node, field string) {
		s := d.Str(v, field)
		switch {
		case s == "":
			d.Errorf(v, field, "empty")
		case validTargetName(s) && !strings.ContainsAny(s, ".:/"):
			to.Targets = append(to.Targets, s) // checked against the targets later
		case strings.Contains(s, "{"):
			to.Dests = append(to.Dests, s) // a reference: checked once filled
		default:
			if _, err := netfault.ParseDest(s); err != nil {
				d.Errorf(v, field, "want a target name, IP, CIDR, IP:PORT, CIDR:PORT or :PORT: %v", err)
			}
			to.Dests = append(to.Dests, s)
		}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		add(n, field)
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			d.Errorf(n, field, "empty: name where the fault applies")
		}
		for i, c := range n.Content {
			add(c, fmt.Sprintf("%s[%d]", field, i))
		}
	case yaml.MappingNode:
		f := d.Mapping(n, field, "tags")
		v := f.Get("tags")
		if v == nil {
			d.Errorf(n, field+".tags", "required in this form: to: {tags: {zone: b}}")
			break
		}
		to.Tags = map[string]string{}
		tf := d.Mapping(v, field+".tags")
		for _, k := range tf.Keys {
			to.Tags[k.Value] = d.Str(tf.Get(k.Value), field+".tags."+k.Value)
		}
		if len(to.Tags) == 0 {
			d.Errorf(v, field+".tags", "empty")
		}
	default:
		d.Errorf(n, field, "want a destination, a list of them or {tags: {...}}, got %s", decode.KindName(n))
	}
	return to
}

func validTargetName(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0
}

func (d *decoder) partitionAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "to", "reject")
	var p Partition
	if v := f.Get("to"); v != nil {
		p.To = d.netTo(v, field+".to")
	} else {
		d.Errorf(n, field+".to", "required: where the target is cut off from, e.g. partition: {to: payments}")
	}
	if v := f.Get("reject"); v != nil {
		p.Reject = d.Boolean(v, field+".reject")
	}
	return p
}

func (d *decoder) packetLossAction(n *yaml.Node, field string) Action {
	f := d.Mapping(n, field, "percent", "to", "protocol")
	p := PacketLoss{Protocol: "all"}
	if v := f.Get("percent"); v != nil {
		if p.Percent = d.Integer(v, field+".percent"); p.Percent < 1 || p.Percent > 100 {
			d.Errorf(v, field+".percent", "must be 1 to 100, got %s", v.Value)
		}
	} else {
		d.Errorf(n, field+".percent", "required, e.g. packet_loss: {percent: 20, to: db}")
	}
	if v := f.Get("to"); v != nil {
		p.To = d.netTo(v, field+".to")
	} else {
		d.Errorf(n, field+".to", "required: where packets are lost, e.g. packet_loss: {percent: 20, to: db}")
	}
	if v := f.Get("protocol"); v != nil {
		p.Protocol = d.Str(v, field+".protocol")
		if !slices.Contains([]string{"tcp", "udp", "all"}, p.Protocol) {
			d.Errorf(v, field+".protocol", "want tcp, udp or all, got %q", p.Protocol)
		}
	}
	return p
}

// netTarget returns the to: of a network action.
func netTarget(a Action) (NetTo, bool) {
	switch a := a.(type) {
	case Partition:
		return a.To, true
	case PacketLoss:
		return a.To, true
	}
	return NetTo{}, false
}

// checkNetworkFault checks a network fault against its target and the
// targets its to: names.
func (d *decoder) checkNetworkFault(ft Fault, t *Target, targets map[string]*Target, at *yaml.Node, field string) {
	if t.Pods != nil {
		d.checkPodNetworkFault(ft, t, targets, at, field)
		return
	}
	if t.Process == nil {
		d.Errorf(at, field, "%s acts in the network namespace of a process or pods target, but target %q is neither", ft.Action.Kind(), t.Name)
		return
	}
	if t.Process.Launched() && !t.Process.Isolated && !ft.AllowHostNetwork {
		d.Errorf(at, field, "target %q runs in the host's network namespace: %s there hits every process of the host that talks to its to: (add network: isolated to the target, or allow_host_network: true to the fault)", t.Name, ft.Action.Kind())
	}
	to, _ := netTarget(ft.Action)
	for _, name := range to.Targets {
		tt, ok := targets[name]
		switch {
		case !ok:
			d.Errorf(valueOf(valueOf(at, ft.Action.Kind()), "to"), field+"."+ft.Action.Kind()+".to", "no target named %q%s (or give an IP, CIDR, IP:PORT or :PORT)", name, decode.Suggest(name, slices.Sorted(maps.Keys(targets))))
		case tt.Process == nil:
			d.Errorf(valueOf(valueOf(at, ft.Action.Kind()), "to"), field+"."+ft.Action.Kind()+".to", "target %q is not a process: give its address instead", name)
		}
	}
	if len(to.Tags) > 0 && !slices.ContainsFunc(slices.Collect(maps.Values(targets)), func(t *Target) bool { return t.Process != nil && t.Tags != nil }) {
		d.Errorf(valueOf(at, ft.Action.Kind()), field+"."+ft.Action.Kind()+".to.tags", "no process target has tags")
	}
}

// checkIsolation checks what network: isolated needs of a process target.
func (d *decoder) checkIsolation(t Target, n *yaml.Node, field string) {
	if !t.Process.Isolated {
		return
	}
	if !t.Process.Launched() {
		d.Errorf(n, field, "only a process the run launches (command) gets a network namespace of its own; a running process is reached in its own namespace as it is")
	}
}

// InterceptTarget is the TCP connections that the processes of From open
// to To: they pass through a faultline proxy in From's network namespace,
// which every proxy toxic and down act on, with nothing of the client
// changed. It has no address of its own.
type InterceptTarget struct {
	From string
	To   NetTo
	// AllowHostNetwork lets From be in the host's own network namespace,
	// where every process that connects to To is intercepted.
	AllowHostNetwork bool
}

// DNSIntercept sends the DNS queries that the processes of From send to
// any resolver (UDP and TCP port 53) to the run's DNS fault server.
type DNSIntercept struct{ From string }

var interceptKeys = []string{"from", "to", "allow_host_network"}

func (d *decoder) interceptTarget(n *yaml.Node, field string) *InterceptTarget {
	f := d.Mapping(n, field, interceptKeys...)
	t := &InterceptTarget{}
	if v := f.Get("from"); v != nil {
		t.From = d.Str(v, field+".from")
	} else {
		d.Errorf(n, field+".from", "required: the process target whose connections pass through the proxy")
	}
	if v := f.Get("to"); v != nil {
		t.To = d.netTo(v, field+".to")
	} else {
		d.Errorf(n, field+".to", "required: where the intercepted connections go (a target name, HOST:PORT, CIDR:PORT or :PORT)")
	}
	if v := f.Get("allow_host_network"); v != nil {
		t.AllowHostNetwork = d.Boolean(v, field+".allow_host_network")
	}
	return t
}

func (d *decoder) dnsIntercept(n *yaml.Node, field string) *DNSIntercept {
	f := d.Mapping(n, field, "from")
	i := &DNSIntercept{}
	if v := f.Get("from"); v != nil {
		i.From = d.Str(v, field+".from")
	} else {
		d.Errorf(n, field+".from", "required: the process target whose DNS queries this resolver answers")
	}
	return i
}

// checkIntercepts checks that an intercept's from is a process target,
// isolated unless the host's namespace is allowed, and what its to: names.
func (d *decoder) checkIntercepts(x *Experiment, root *yaml.Node, targets map[string]*Target) {
	tn := valueOf(root, "targets")
	for _, t := range x.Targets {
		var from string
		var at *yaml.Node
		field := "targets." + t.Name
		switch {
		case t.Intercept != nil:
			from, at, field = t.Intercept.From, valueOf(valueOf(valueOf(tn, t.Name), "intercept"), "from"), field+".intercept.from"
		case t.DNS != nil && t.DNS.Intercept != nil:
			from, at, field = t.DNS.Intercept.From, valueOf(valueOf(valueOf(valueOf(tn, t.Name), "dns"), "intercept"), "from"), field+".dns.intercept.from"
		default:
			continue
		}
		ft, ok := targets[from]
		switch {
		case from == "":
		case !ok:
			d.Errorf(at, field, "no target named %q%s", from, decode.Suggest(from, slices.Sorted(maps.Keys(targets))))
		case ft.Pods != nil && t.DNS != nil:
			if ft.Pods.AgentImage == "" {
				d.Errorf(at, field, "a DNS intercept inside the pods of %q needs an agent image: add agent_image: IMAGE to its pods, or run with --agent-image", from)
			}
			continue
		case ft.Pods != nil:
			d.checkPodIntercept(t, ft, valueOf(valueOf(tn, t.Name), "intercept"), "targets."+t.Name+".intercept")
			continue
		case ft.Process == nil:
			d.Errorf(at, field, "target %q is not a process or pods target: an intercept acts in its network namespace", from)
		case t.DNS != nil && ft.Process.Launched() && !ft.Process.Isolated:
			d.Errorf(at, field, "target %q runs in the host's network namespace, whose resolver every program of the machine shares: give it network: isolated", from)
		case t.Intercept != nil && ft.Process.Launched() && !ft.Process.Isolated && !t.Intercept.AllowHostNetwork:
			d.Errorf(at, field, "target %q runs in the host's network namespace: every process of the host that connects to %s would be intercepted (give it network: isolated, or allow_host_network: true to the intercept)", from, t.Intercept.To)
		}
		if t.Intercept == nil {
			continue
		}
		for _, name := range t.Intercept.To.Targets {
			if tt, ok := targets[name]; !ok || tt.addresses() == 0 || tt.Process == nil {
				d.Errorf(valueOf(valueOf(valueOf(tn, t.Name), "intercept"), "to"), "targets."+t.Name+".intercept.to", "%q is not a process target the run launches: give HOST:PORT, CIDR:PORT or :PORT", name)
			}
		}
	}
}

// checkPodNetworkFault checks a network fault inside the pods of a pods
// target: an agent acts there, from an image the file or --agent-image
// names, and to: names addresses or the pods of pods targets.
func (d *decoder) checkPodNetworkFault(ft Fault, t *Target, targets map[string]*Target, at *yaml.Node, field string) {
	if t.Pods.AgentImage == "" {
		d.Errorf(at, field, "%s inside the pods of %q needs an agent image: add agent_image: IMAGE to the target's pods (the faultline binary as entrypoint, built by deploy/kubernetes/Dockerfile and pushed where the cluster pulls from), or run with --agent-image", ft.Action.Kind(), t.Name)
	}
	to, _ := netTarget(ft.Action)
	toAt := valueOf(valueOf(at, ft.Action.Kind()), "to")
	for _, name := range to.Targets {
		tt, ok := targets[name]
		switch {
		case !ok:
			d.Errorf(toAt, field+"."+ft.Action.Kind()+".to", "no target named %q%s (or give an IP, CIDR, IP:PORT or :PORT)", name, decode.Suggest(name, slices.Sorted(maps.Keys(targets))))
		case tt.Pods == nil:
			d.Errorf(toAt, field+"."+ft.Action.Kind()+".to", "target %q is not a pods target: from inside a pod, give its address instead", name)
		}
	}
	if len(to.Tags) > 0 {
		d.Errorf(toAt, field+"."+ft.Action.Kind()+".to.tags", "tags name process targets' instances: from inside a pod, name a pods target or give addresses")
	}
}

// checkPodIntercept checks an intercept inside the pods of a pods target:
// agents run it, each fault on it in a proxy of its own, and its to: is
// addresses with a port.
func (d *decoder) checkPodIntercept(t Target, from *Target, n *yaml.Node, field string) {
	if from.Pods.AgentImage == "" {
		d.Errorf(valueOf(n, "from"), field+".from", "an intercept inside the pods of %q needs an agent image: add agent_image: IMAGE to its pods, or run with --agent-image", from.Name)
	}
	if len(t.Intercept.To.Targets) > 0 || len(t.Intercept.To.Tags) > 0 {
		d.Errorf(valueOf(n, "to"), field+".to", "from inside pods, give HOST:PORT, CIDR:PORT or :PORT (a pods target has no port faultline knows)")
	}
}
