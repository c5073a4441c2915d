package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/proxy"
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
			_ = s.env.Journal.Append(journal.Event{Type: journal.Note, ID: ops[i].id, Message: "undo failed: " + err.Error()}) // a lost line is counted (see Journal)
			s.env.Progress("network: could not undo %s: %v (faultline recover tries again)", ops[i].op, err)
			continue
		}
		_ = s.env.Journal.Append(journal.Event{Type: journal.Undone, ID: ops[i].id}) // a lost line is counted (see Journal)
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
	ns, err := netfault.PidNS(in.Proc.PID)
	if err != nil {
		return ns, err
	}
	return lasting(ns)
}

// lasting names the host's namespace by a path that outlives the process
// it was found through (PID 1's), so that recover still finds it there
// after the process and the runner are gone.
func lasting(ns netfault.NS) (netfault.NS, error) {
	host, err := netfault.HostNS()
	if err != nil {
		return ns, err
	}
	if ns.Same(host) {
		return host, nil
	}
	return ns, nil
}

// NetDests resolves a network fault's to: as seen from a namespace (isolated
// is whether it is an instance's own): destinations are parsed, a process
// target names each instance (its address when isolated; else, from an
// isolated namespace, the host's bridge address, and from the host's,
// 127.0.0.1 and the instance's port), and tags name the instances that
// have them, across the process targets.
//
// With ports (an intercept's destinations, which are listeners), each
// instance is its address and port.
func (s *Set) NetDests(to experiment.NetTo, isolated, ports bool) ([]netfault.Dest, error) {
	var out []netfault.Dest
	add := func(d netfault.Dest) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	addInstance := func(p *Process, in *Instance) error {
		port := uint16(0)
		if ports {
			if port = uint16(in.Port); port == 0 {
				return fmt.Errorf("target %s[%d] has no port faultline knows: give its HOST:PORT in to", p.spec.Name, in.Index)
			}
		}
		switch {
		case in.Net != nil:
			add(netfault.Dest{Prefix: netip.PrefixFrom(in.Net.Addr, 32), Port: port})
		case isolated && s.HostIP().IsValid():
			add(netfault.Dest{Prefix: netip.PrefixFrom(s.HostIP(), 32), Port: port})
		case in.Port != 0:
			add(netfault.Dest{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: uint16(in.Port)})
		default:
			return fmt.Errorf("target %s[%d] has no address faultline knows: give its address in to", p.spec.Name, in.Index)
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

// Intercept starts every intercept target's proxies and every intercepting
// resolver, one in each network namespace of its from: target, with its
// redirect journaled: after references are filled, before anything is
// launched, so that every connection the clients open is intercepted.
func (s *Set) Intercept(ctx context.Context) error {
	for _, t := range s.order {
		switch t := t.(type) {
		case *Proxy:
			if pods, ok := s.byName[interceptFrom(t.spec)].(*Pods); ok {
				t.InPods = pods // each fault's agent intercepts in the pods
				continue
			}
			if t.spec.Intercept != nil {
				if err := s.interceptTCP(ctx, t); err != nil {
					return fmt.Errorf("target %s: %w", t.spec.Name, err)
				}
			}
		case *DNS:
			if ic := t.spec.DNS.Intercept; ic != nil {
				if pods, ok := s.byName[ic.From].(*Pods); ok {
					t.InPods = pods // each fault's agent answers in the pods
					continue
				}
			}
			if t.spec.DNS.Intercept != nil {
				if err := s.interceptDNS(ctx, t); err != nil {
					return fmt.Errorf("target %s: %w", t.spec.Name, err)
				}
			}
		}
	}
	return nil
}

// fromNamespaces lists the distinct network namespaces of a process
// target's instances, each with whether it is an instance's own.
func (s *Set) fromNamespaces(name string) ([]netfault.NS, []bool, error) {
	p, ok := s.byName[name].(*Process)
	if !ok {
		return nil, nil, fmt.Errorf("from: %s is not a process target", name)
	}
	var out []netfault.NS
	var own []bool
	for _, in := range p.Instances {
		var ns netfault.NS
		var err error
		switch {
		case in.Net != nil:
			ns = in.Net.NS
		case p.Launched(): // not started yet: it will run in faultline's namespace
			if ns, err = netfault.PidNS(os.Getpid()); err == nil {
				ns, err = lasting(ns)
			}
		default:
			ns, err = in.Namespace()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s[%d]: its network namespace: %w", name, in.Index, err)
		}
		if !slices.ContainsFunc(out, ns.Same) {
			out, own = append(out, ns), append(own, in.Net != nil)
		}
	}
	return out, own, nil
}

func (s *Set) interceptTCP(ctx context.Context, p *Proxy) error {
	ic := p.spec.Intercept
	nss, own, err := s.fromNamespaces(ic.From)
	if err != nil {
		return err
	}
	cfg := proxy.Config{Name: p.spec.Name, Seed: s.env.Seed}
	for _, f := range s.x.Faults {
		if f.Target == p.spec.Name && experiment.HTTPAction(f.Action) {
			cfg.Protocol = "http"
		}
	}
	for i, ns := range nss {
		if host, err := ns.IsHost(); err != nil {
			return err
		} else if host && !ic.AllowHostNetwork {
			return fmt.Errorf("%s runs in the host's network namespace: allow_host_network: true is needed to intercept there", ic.From)
		}
		to, err := s.NetDests(ic.To, own[i], true)
		if err != nil {
			return err
		}
		if err := s.Tables(ctx, ns); err != nil {
			return err
		}
		name := fmt.Sprintf("intercept-%s-%d", p.spec.Name, i)
		px, _, err := netfault.InterceptTCP(ctx, ns, s.env.Run, name, to, cfg, s.netJournal(fmt.Sprintf("network: intercept %s in %s", p.spec.Name, ns.Path)))
		if err != nil {
			return fmt.Errorf("intercept in %s: %w", ns, err)
		}
		p.Intercepted = append(p.Intercepted, px)
		s.env.Progress("intercept %s: connections from %s to %s pass through %s", p.spec.Name, ic.From, dests(to), px.Listen())
	}
	return nil
}

func (s *Set) interceptDNS(ctx context.Context, d *DNS) error {
	spec := d.spec.DNS
	nss, _, err := s.fromNamespaces(spec.Intercept.From)
	if err != nil {
		return err
	}
	for i, ns := range nss {
		if err := s.Tables(ctx, ns); err != nil {
			return err
		}
		name := fmt.Sprintf("dns-%s-%d", d.spec.Name, i)
		srv, _, err := netfault.InterceptDNS(ctx, ns, s.env.Run, name, dnsConfig(spec), s.netJournal(fmt.Sprintf("network: dns intercept %s in %s", d.spec.Name, ns.Path)))
		if err != nil {
			return fmt.Errorf("dns intercept in %s: %w", ns, err)
		}
		d.Intercepted = append(d.Intercepted, srv)
		s.env.Progress("dns %s: queries from %s to any resolver are answered here", d.spec.Name, spec.Intercept.From)
	}
	return nil
}

func dests(ds []netfault.Dest) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return strings.Join(out, ", ")
}

func interceptFrom(t experiment.Target) string {
	if t.Intercept == nil {
		return ""
	}
	return t.Intercept.From
}
