package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/netfault"
)

// netState is what a run has made of the network: its bridge and isolated
// namespaces (made in Setup), the nftables tables its faults need (made on
// a fault's first use of a namespace), each journaled before it is made and
// undone at Teardown, last first.
type netState struct {
	mu      sync.Mutex
	network *netfault.Network // nil: no target is isolated
	tables  []netfault.NS     // namespaces whose tables were made
	ops     []madeOp
}

type madeOp struct {
	id string
	op netfault.Op
}

// NetUndo is how recover undoes a netfault change: the Op, as JSON.
func NetUndo(op netfault.Op) *journal.Undo {
	b, _ := json.Marshal(op)
	return &journal.Undo{Kind: "netfault", Data: b}
}

// netJournal returns the netfault.Journal that writes each Op as an intent
// of the run (what names it in the journal), and keeps it to undo at
// Teardown.
func (s *Set) netJournal(what string) netfault.Journal {
	return func(op netfault.Op) error {
		id := s.env.NextID()
		if err := s.env.Journal.Append(journal.Event{Type: journal.Intent, ID: id, Name: what, Message: op.String(), Undo: NetUndo(op)}); err != nil {
			return err
		}
		s.net.mu.Lock()
		s.net.ops = append(s.net.ops, madeOp{id: id, op: op})
		s.net.mu.Unlock()
		return nil
	}
}

// setupNetwork makes the run's bridge and every isolated instance's
// namespace, before anything is launched.
func (s *Set) setupNetwork(ctx context.Context) error {
	var isolated []*Process
	for _, t := range s.order {
		if p, ok := t.(*Process); ok && p.spec.Process.Isolated {
			isolated = append(isolated, p)
		}
	}
	if len(isolated) == 0 {
		return nil
	}
	nw, err := netfault.NewNetwork(s.env.Run, s.x.Network.Subnet)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := nw.Create(ctx, s.netJournal("network: bridge "+nw.Bridge)); err != nil {
		return fmt.Errorf("network: bridge %s on %s: %w", nw.Bridge, nw.Subnet, err)
	}
	s.net.network = nw
	s.env.Progress("network: bridge %s, host %s on %s", nw.Bridge, nw.Host, nw.Subnet)
	n := 0
	for _, p := range isolated {
		for _, in := range p.Instances {
			n++
			inst, err := nw.AddInstance(ctx, n, s.netJournal(fmt.Sprintf("network: namespace of %s[%d]", p.spec.Name, in.Index)))
			if err != nil {
				return fmt.Errorf("target %s[%d]: network namespace: %w", p.spec.Name, in.Index, err)
			}
			in.Net = &inst
		}
	}
	return nil
}

// HostIP is the address isolated namespaces reach the host at ({host.ip});
// invalid when no target is isolated.
func (s *Set) HostIP() netip.Addr {
	if s.net.network == nil {
		return netip.Addr{}
	}
	return s.net.network.Host
}

// Tables makes the run's nftables tables in ns once (journaled), for a
// fault that injects there; they go at Teardown.
func (s *Set) Tables(ctx context.Context, ns netfault.NS) error {
	s.net.mu.Lock()
	made := slices.ContainsFunc(s.net.tables, ns.Same)
	s.net.mu.Unlock()
	if made {
		return nil
	}
	if _, err := netfault.Tables(ctx, ns, s.env.Run, s.netJournal("network: tables "+netfault.TableName(s.env.Run)+" in "+ns.Path)); err != nil {
		return err
	}
	s.net.mu.Lock()
	s.net.tables = append(s.net.tables, ns)
	s.net.mu.Unlock()
	return nil
}

// teardownNetwork undoes what the run made of the network, last first.
func (s *Set) teardownNetwork() {
	s.net.mu.Lock()
	ops := s.net.ops
	s.net.ops = nil
	s.net.mu.Unlock()
	ctx := context.Background()
	for i := len(ops) - 1; i >= 0; i-- {
		err := netfault.Undo(ctx, ops[i].op)
		if err != nil {
			_ = s.env.Journal.Append(journal.Event{Type: journal.Note, ID: ops[i].id, Message: "undo failed: " + err.Error()})
			s.env.Progress("network: could not undo %s: %v (faultline recover tries again)", ops[i].op, err)
			continue
		}
		_ = s.env.Journal.Append(journal.Event{Type: journal.Undone, ID: ops[i].id})
	}
}

// Namespace returns the network namespace an instance runs in: its own when
// isolated, else its process's (the host's, or a container's).
func (in *Instance) Namespace() (netfault.NS, error) {
	if in.Net != nil {
		return in.Net.NS, nil
	}
	if in.Proc.PID == 0 {
		return netfault.NS{}, errors.New("not running")
	}
	return netfault.PidNS(in.Proc.PID)
}

// NetDests resolves a network fault's to: as seen from a namespace (isolated
// is whether it is an instance's own): destinations are parsed, a process
// target names each instance (its address when isolated; else, from an
// isolated namespace, the host's bridge address, and from the host's,
// 127.0.0.1 and the instance's port), and tags name the instances that
// have them, across the process targets.
func (s *Set) NetDests(to experiment.NetTo, isolated bool) ([]netfault.Dest, error) {
	var out []netfault.Dest
	add := func(d netfault.Dest) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	addInstance := func(p *Process, in *Instance) error {
		switch {
		case in.Net != nil:
			add(netfault.Dest{Prefix: netip.PrefixFrom(in.Net.Addr, 32)})
		case isolated && s.HostIP().IsValid():
			add(netfault.Dest{Prefix: netip.PrefixFrom(s.HostIP(), 32)})
		case in.Port != 0:
			add(netfault.Dest{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: uint16(in.Port)})
		default:
			return fmt.Errorf("target %s[%d] has no address faultline knows: give its address in to:", p.spec.Name, in.Index)
		}
		return nil
	}
	var errs []error
	for _, name := range to.Targets {
		p, ok := s.byName[name].(*Process)
		if !ok {
			errs = append(errs, fmt.Errorf("to: %s is not a process target", name))
			continue
		}
		for _, in := range p.Instances {
			errs = append(errs, addInstance(p, in))
		}
	}
	if len(to.Tags) > 0 {
		for _, t := range s.order {
			p, ok := t.(*Process)
			if !ok {
				continue
			}
			for _, in := range p.Instances {
				if p.hasTags(in.Index, to.Tags) {
					errs = append(errs, addInstance(p, in))
				}
			}
		}
	}
	for _, d := range to.Dests {
		dest, err := netfault.ParseDest(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("to: %w", err))
			continue
		}
		add(dest)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("to: names no address (no instance has those tags)")
	}
	return out, nil
}

// hasTags reports whether instance i has every one of tags.
func (p *Process) hasTags(i int, tags map[string]string) bool {
	for k, v := range tags {
		if got, ok := p.Tag(i, k); !ok || got != v {
			return false
		}
	}
	return true
}
