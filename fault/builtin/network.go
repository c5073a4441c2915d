package builtin

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/target"
)

// Network faults (package netfault): a partition or packet loss in the
// network namespace of each selected instance of a process target, as
// nftables rules in the run's tables there, each fault in chains of its
// own. An instance that is not isolated runs in its process's namespace:
// the host's needs allow_host_network, a container's is reached as it is.

func injectPartition(ctx context.Context, f *fault.Fault, a experiment.Partition) error {
	return injectNetwork(ctx, f, a.To, func(to []netfault.Dest) netfault.Fault {
		return netfault.Partition{To: to, Reject: a.Reject}
	})
}

func injectPacketLoss(ctx context.Context, f *fault.Fault, a experiment.PacketLoss) error {
	return injectNetwork(ctx, f, a.To, func(to []netfault.Dest) netfault.Fault {
		return netfault.PacketLoss{Percent: a.Percent, To: to, Protocol: netfault.Protocol(a.Protocol), Direction: netfault.Direction(f.Spec.Direction)}
	})
}

// netPlace is one namespace a network fault acts in, and what it names.
type netPlace struct {
	ns    netfault.NS
	who   []string
	dests []netfault.Dest
}

func injectNetwork(ctx context.Context, f *fault.Fault, to experiment.NetTo, build func([]netfault.Dest) netfault.Fault) error {
	if pods, ok := f.Target.(*target.Pods); ok {
		return injectPodNetwork(ctx, f, pods, to, build)
	}
	t, ok := f.Target.(*target.Process)
	if !ok {
		return fmt.Errorf("fault %s: %s acts on a process target", f.Spec.Name, f.Spec.Action.Kind())
	}
	ins, err := t.Select(f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	// Every namespace is checked before anything is touched.
	var places []*netPlace
	for _, in := range ins {
		ns, err := in.Namespace()
		if err != nil {
			return fmt.Errorf("target %s[%d]: its network namespace: %w", t.Spec().Name, in.Index, err)
		}
		who := fmt.Sprintf("%s[%d]", t.Spec().Name, in.Index)
		if i := indexNS(places, ns); i >= 0 {
			places[i].who = append(places[i].who, who)
			continue
		}
		host, err := ns.IsHost()
		if err != nil {
			return fmt.Errorf("target %s: %w", who, err)
		}
		if host && !f.Spec.AllowHostNetwork {
			return fmt.Errorf("fault %s: %s runs in the host's network namespace, where %s hits every process that talks to %s: add allow_host_network: true to the fault, or network: isolated to a launched target", f.Spec.Name, who, f.Spec.Action.Kind(), to)
		}
		dests, err := t.Set().NetDests(to, in.Net != nil, false)
		if err != nil {
			return fmt.Errorf("fault %s: %w", f.Spec.Name, err)
		}
		places = append(places, &netPlace{ns: ns, who: []string{who}, dests: dests})
	}
	for i, pl := range places {
		if err := t.Set().Tables(ctx, pl.ns); err != nil {
			return fmt.Errorf("fault %s: nftables tables in %s: %w", f.Spec.Name, pl.ns, err)
		}
		chains := chainName(f.Spec.Name, i)
		nf := build(pl.dests)
		err := f.Step(ctx, fault.Step{
			What: fmt.Sprintf("%s to %s in the network namespace of %s", f.Spec.Action.Kind(), dests(pl.dests), strings.Join(pl.who, ", ")),
			Undo: target.NetUndo(netfault.InjectOp(pl.ns, f.Run, chains)),
			Do: func(ctx context.Context) error {
				reached := false
				_, err := netfault.Inject(ctx, pl.ns, f.Run, chains, nf, func(netfault.Op) error { reached = true; return nil })
				if err != nil && !reached { // refused before the change
					return fault.NotApplied(err)
				}
				return err
			},
		})
		if err != nil {
			return err
		}
		f.Hit(fmt.Sprintf("network namespace of %s (%s)", strings.Join(pl.who, ", "), pl.ns.Path))
	}
	f.Evidence("nftables chains %s.* in table %s of %s", chainName(f.Spec.Name, 0), netfault.TableName(f.Run), plural(len(places), "namespace", "namespaces"))
	return nil
}

func indexNS(places []*netPlace, ns netfault.NS) int {
	for i, p := range places {
		if p.ns.Same(ns) {
			return i
		}
	}
	return -1
}

func dests(ds []netfault.Dest) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.String())
	}
	return strings.Join(s, ", ")
}

// chainName is the name of a fault's chains in the i-th namespace it acts
// in: the fault's name in the characters nftables takes, and i.
func chainName(name string, i int) string {
	s := slug(name)
	if len(s) > 48 {
		s = s[:48]
	}
	return s + "-" + strconv.Itoa(i)
}

// undoNetfault removes what a run made of the network: a fault's chains,
// its tables, a veth, a namespace, its bridge.
func undoNetfault(ctx context.Context, u *journal.Undo) (string, error) {
	var op netfault.Op
	if err := json.Unmarshal(u.Data, &op); err != nil {
		return "", fmt.Errorf("the journal's netfault change is unreadable: %w", err)
	}
	if err := netfault.Undo(ctx, op); err != nil {
		return "", err
	}
	return "removed " + op.String(), nil
}
