package netfault

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ErrNoTables: Inject in a namespace where the run's tables were not made
// (Tables makes them, journaled).
var ErrNoTables = errors.New("the run's tables are not there")

// ErrTooBroad: a fault on the host's own namespace whose destination is
// every address and every port, which would cut the machine off.
var ErrTooBroad = errors.New("destination is every address and port of the host's namespace")

// TableName is the name of a run's nftables tables (one inet, one netdev)
// in every namespace it touches.
func TableName(run string) string { return "faultline_" + run }

// Direction is which way a fault acts, seen from the namespace.
type Direction string

// Directions.
const (
	// Upstream: from the namespace to the destination.
	Upstream Direction = "upstream"
	// Downstream: from the destination to the namespace.
	Downstream Direction = "downstream"
	// Both directions; the zero Direction means Both.
	Both Direction = "both"
)

// Protocol selects packets: "tcp", "udp", or "all" (the zero value).
type Protocol string

// Protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
	All Protocol = "all"
)

// A Fault is what Inject puts in place: Partition, PacketLoss or Redirect.
type Fault interface {
	validate() error
	build(b *builder) error
}

// Partition lets no packet pass between the namespace and To, either way.
// Without Reject the packets vanish where the sender cannot tell (a TCP
// connect hangs until its timeout); with Reject a TCP peer gets an RST and
// any other an ICMP port unreachable, so it fails at once (TCP resets and
// ICMP unreachable errors then pass, the rejections among them).
type Partition struct {
	To     []Dest
	Reject bool
}

// PacketLoss drops Percent % of the packets between the namespace and To,
// chosen at random, where the sender cannot tell (TCP retransmits, a UDP
// send succeeds). Each packet is judged once, loopback ones included.
type PacketLoss struct {
	Percent   int // 1 to 100
	To        []Dest
	Protocol  Protocol
	Direction Direction
}

// Redirect sends the namespace's new connections to To (IPv4 only) to its
// own loopback port Port, except those from sockets marked Mark (an
// intercept's own upstream connections). Protocol "all" redirects both TCP
// and UDP.
type Redirect struct {
	To       []Dest
	Protocol Protocol
	Port     uint16
	Mark     uint32
}

func (p Partition) validate() error { return validDests(p.To) }
func (r Redirect) validate() error {
	if r.Port == 0 {
		return errors.New("redirect: no port")
	}
	for _, d := range r.To {
		if d.Prefix.IsValid() && !d.Prefix.Addr().Is4() {
			return fmt.Errorf("redirect to %s: only IPv4 destinations are intercepted", d)
		}
	}
	if err := validProtocol(r.Protocol); err != nil {
		return err
	}
	return validDests(r.To)
}

func (l PacketLoss) validate() error {
	if l.Percent < 1 || l.Percent > 100 {
		return fmt.Errorf("packet loss: percent %d: want 1 to 100", l.Percent)
	}
	switch l.Direction {
	case "", Upstream, Downstream, Both:
	default:
		return fmt.Errorf("packet loss: direction %q: want upstream, downstream or both", l.Direction)
	}
	if err := validProtocol(l.Protocol); err != nil {
		return err
	}
	return validDests(l.To)
}

func validProtocol(p Protocol) error {
	switch p {
	case "", TCP, UDP, All:
		return nil
	}
	return fmt.Errorf("protocol %q: want tcp, udp or all", p)
}

func validDests(to []Dest) error {
	if len(to) == 0 {
		return errors.New("no destination")
	}
	return nil
}

// tooBroad reports whether a destination matches everything.
func tooBroad(to []Dest) error {
	for _, d := range to {
		if d.Port == 0 && (!d.Prefix.IsValid() || d.Prefix.Bits() == 0) {
			return fmt.Errorf("%s: %w", d, ErrTooBroad)
		}
	}
	return nil
}

// TablesOp is the Op that Tables journals.
func TablesOp(ns NS, run string) Op { return Op{Kind: KindTable, Run: run, NS: ns} }

// Tables makes the run's tables in ns, after journaling TablesOp; making
// them again does nothing. Undoing that Op removes every fault the run has
// in ns at once (what recover does); undo it once the run's faults there
// are reverted.
func Tables(ctx context.Context, ns NS, run string, j Journal) (Op, error) {
	if !validName(run) {
		return Op{}, fmt.Errorf("run id %q: want 1 to 64 of a-z, A-Z, 0-9, - and _", run)
	}
	f, ns, err := openRecorded(ns)
	if err != nil {
		return Op{}, err
	}
	defer f.Close()
	op := TablesOp(ns, run)
	if err := ctx.Err(); err != nil {
		return op, err
	}
	if err := j.record(op); err != nil {
		return op, err
	}
	c, err := nftConn(f)
	if err != nil {
		return op, err
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyNetdev} {
		c.AddTable(&nftables.Table{Name: TableName(run), Family: fam})
	}
	if err := c.Flush(); err != nil {
		err = fmt.Errorf("nftables in %s: %w", ns, err)
		undoOnError(op, &err)
		return op, err
	}
	return op, nil
}

// openRecorded opens ns and returns it with its identity filled in.
func openRecorded(ns NS) (*os.File, NS, error) {
	f, err := ns.open()
	if err != nil {
		return nil, ns, err
	}
	if ns.Ino == 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, ns, err
		}
		ns.Dev, ns.Ino = st.Dev, st.Ino
	}
	return f, ns, nil
}

// InjectOp is the Op that Inject journals.
func InjectOp(ns NS, run, fault string) Op {
	return Op{Kind: KindChains, Run: run, NS: ns, Fault: fault}
}

// Inject puts fault in place in ns, in chains of its own (named after
// fault) inside the run's tables, which Tables must have made. It
// journals InjectOp first; the change is one nf_tables transaction, all or
// nothing. Undoing the Op reverts this fault alone. In the host's own
// namespace a destination must name an address or a port.
//
// Where the rules go: drops on the namespace's interfaces (netdev egress
// for upstream, ingress for downstream; bridge ports are left out, their
// bridge judges the host's traffic) and, for loopback traffic, at inet
// prerouting, which each loopback packet passes once; rejects at inet
// output and input; redirects at inet nat output.
func Inject(ctx context.Context, ns NS, run, fault string, f Fault, j Journal) (Op, error) {
	if !validName(fault) {
		return Op{}, fmt.Errorf("fault name %q: want 1 to 64 of a-z, A-Z, 0-9, - and _", fault)
	}
	if err := f.validate(); err != nil {
		return Op{}, err
	}
	file, ns, err := openRecorded(ns)
	if err != nil {
		return Op{}, err
	}
	defer file.Close()
	op := InjectOp(ns, run, fault)
	host, err := ns.IsHost()
	if err != nil {
		return op, err
	}
	b := &builder{fault: fault, host: host}
	if b.c, err = nftConn(file); err != nil {
		return op, err
	}
	if b.inet, b.netdev, err = runTables(b.c, run); err != nil {
		return op, fmt.Errorf("%s: %w", ns, err)
	}
	chains, err := faultChains(b.c, run, fault)
	if err != nil {
		return op, err
	}
	if len(chains) > 0 {
		return op, fmt.Errorf("fault %s of run %s is already in %s", fault, run, ns)
	}
	if b.devices, err = devices(file); err != nil {
		return op, fmt.Errorf("%s: %w", ns, err)
	}
	if err := f.build(b); err != nil {
		return op, err
	}
	if err := ctx.Err(); err != nil {
		return op, err
	}
	if err := j.record(op); err != nil {
		return op, err
	}
	if err := b.c.Flush(); err != nil {
		err = fmt.Errorf("inject %s in %s: %w", fault, ns, err)
		undoOnError(op, &err)
		return op, err
	}
	return op, nil
}

// runTables finds the run's two tables.
func runTables(c *nftables.Conn, run string) (inet, netdev *nftables.Table, err error) {
	tables, err := c.ListTables()
	if err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name != TableName(run) {
			continue
		}
		switch t.Family {
		case nftables.TableFamilyINet:
			inet = t
		case nftables.TableFamilyNetdev:
			netdev = t
		}
	}
	if inet == nil || netdev == nil {
		return nil, nil, fmt.Errorf("%s: %w", TableName(run), ErrNoTables)
	}
	return inet, netdev, nil
}

// faultChains lists a fault's chains.
func faultChains(c *nftables.Conn, run, fault string) ([]*nftables.Chain, error) {
	all, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var out []*nftables.Chain
	for _, ch := range all {
		if ch.Table.Name == TableName(run) && strings.HasPrefix(ch.Name, fault+".") {
			out = append(out, ch)
		}
	}
	return out, nil
}

// device is an interface that netdev chains hook.
type device struct {
	name  string
	index int
}

// devices lists the namespace's interfaces other than loopback and bridge
// ports.
func devices(ns *os.File) ([]device, error) {
	h, err := nlHandle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []device
	for _, l := range links {
		a := l.Attrs()
		if a.Index == 1 || a.MasterIndex != 0 || a.Flags&(1<<3) != 0 { // lo, ports, IFF_LOOPBACK
			continue
		}
		out = append(out, device{a.Name, a.Index})
	}
	return out, nil
}

func deleteTables(op Op) error {
	f, err := op.NS.open()
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := nftConn(f)
	if err != nil {
		return err
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	n := 0
	for _, t := range tables {
		if t.Name == TableName(op.Run) {
			c.DelTable(t)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

func deleteChains(op Op) error {
	if !validName(op.Fault) {
		return fmt.Errorf("invalid fault name %q", op.Fault)
	}
	f, err := op.NS.open()
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := nftConn(f)
	if err != nil {
		return err
	}
	chains, err := faultChains(c, op.Run, op.Fault)
	if err != nil || len(chains) == 0 {
		return err
	}
	for _, ch := range chains {
		c.DelChain(ch)
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// builder collects one fault's chains and rules into a transaction.
type builder struct {
	c            *nftables.Conn
	inet, netdev *nftables.Table
	fault        string
	host         bool
	devices      []device
}

func (b *builder) chain(t *nftables.Table, suffix string, hook *nftables.ChainHook, prio *nftables.ChainPriority, typ nftables.ChainType, dev string) *nftables.Chain {
	return b.c.AddChain(&nftables.Chain{
		Name: b.fault + "." + suffix, Table: t, Hooknum: hook, Priority: prio, Type: typ, Device: dev,
	})
}

func (b *builder) rule(ch *nftables.Chain, exprs ...[]expr.Any) {
	b.c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: slices.Concat(exprs...)})
}

// netdevChains adds a netdev chain on each device, at hook.
func (b *builder) netdevChains(hook *nftables.ChainHook, tag string, fill func(*nftables.Chain)) {
	for _, d := range b.devices {
		fill(b.chain(b.netdev, fmt.Sprintf("%s%d", tag, d.index), hook, nftables.ChainPriorityFilter, nftables.ChainTypeFilter, d.name))
	}
}

// side says whether a destination is matched as the packet's destination
// (upstream) or its source (downstream).
type side int

const (
	asDst side = iota
	asSrc
)

// match is the expressions that select the packets of one destination,
// one set per transport protocol (0: any); family is the table's.
func match(d Dest, s side, proto Protocol, netdev bool) [][]expr.Any {
	var l4s []byte
	switch {
	case proto == TCP:
		l4s = []byte{unix.IPPROTO_TCP}
	case proto == UDP:
		l4s = []byte{unix.IPPROTO_UDP}
	case d.Port != 0:
		l4s = []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP}
	default:
		l4s = []byte{0}
	}
	out := make([][]expr.Any, 0, len(l4s))
	for _, l4 := range l4s {
		e := addrMatch(d.Prefix, s, netdev)
		if l4 != 0 {
			e = append(e, l4Match(l4)...)
		}
		if d.Port != 0 {
			off := uint32(2)
			if s == asSrc {
				off = 0
			}
			e = append(e,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(d.Port)})
		}
		out = append(out, e)
	}
	return out
}

func l4Match(l4 byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
	}
}

func addrMatch(p netip.Prefix, s side, netdev bool) []expr.Any {
	if !p.IsValid() {
		return nil
	}
	var e []expr.Any
	v4 := p.Addr().Is4()
	switch {
	case netdev && v4:
		e = append(e, &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)})
	case netdev:
		e = append(e, &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IPV6)})
	case v4:
		e = append(e, familyMatch(unix.NFPROTO_IPV4)...)
	default:
		e = append(e, familyMatch(unix.NFPROTO_IPV6)...)
	}
	off, n := uint32(16), uint32(4)
	switch {
	case v4 && s == asSrc:
		off = 12
	case !v4 && s == asSrc:
		off, n = 8, 16
	case !v4:
		off, n = 24, 16
	}
	e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
	if p.Bits() < p.Addr().BitLen() {
		mask := make([]byte, n)
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()})
}

func familyMatch(nfproto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
	}
}

// rejections selects TCP resets and ICMP destination unreachable errors.
var rejections = [][]expr.Any{
	slices.Concat(l4Match(unix.IPPROTO_TCP), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x04}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0}},
	}),
	slices.Concat(l4Match(unix.IPPROTO_ICMP), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{3}},
	}),
	slices.Concat(l4Match(unix.IPPROTO_ICMPV6), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
	}),
}

// fromLoopback selects packets that came in on lo (ifindex 1 in every
// namespace).
var fromLoopback = []expr.Any{
	&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
	&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)},
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// lose drops percent % of the packets, at random.
func lose(percent int) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: 1, Modulus: 100, Type: unix.NFT_NG_RANDOM},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(percent))},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

func (p Partition) build(b *builder) error {
	if b.host {
		if err := tooBroad(p.To); err != nil {
			return err
		}
	}
	if p.Reject {
		out := b.chain(b.inet, "out", nftables.ChainHookOutput, nftables.ChainPriorityFilter, nftables.ChainTypeFilter, "")
		in := b.chain(b.inet, "in", nftables.ChainHookInput, nftables.ChainPriorityFilter, nftables.ChainTypeFilter, "")
		// The rejections themselves pass: the RST or ICMP error that a
		// reject at output makes comes back in with the destination's
		// address as its source.
		for _, ch := range []*nftables.Chain{out, in} {
			for _, m := range rejections {
				b.rule(ch, m, verdict(expr.VerdictAccept))
			}
		}
		for _, d := range p.To {
			for _, cs := range []struct {
				ch *nftables.Chain
				s  side
			}{{out, asDst}, {in, asSrc}} {
				ch := cs.ch
				for _, m := range match(d, cs.s, All, false) {
					// TCP gets an RST, the rest an ICMP port unreachable.
					b.rule(ch, m, l4Match(unix.IPPROTO_TCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})
					b.rule(ch, m, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}})
				}
			}
		}
		return nil
	}
	drop := func(s side) func(*nftables.Chain) {
		return func(ch *nftables.Chain) {
			for _, d := range p.To {
				for _, m := range match(d, s, All, true) {
					b.rule(ch, m, verdict(expr.VerdictDrop))
				}
			}
		}
	}
	b.netdevChains(nftables.ChainHookEgress, "e", drop(asDst))
	b.netdevChains(nftables.ChainHookIngress, "i", drop(asSrc))
	lo := b.chain(b.inet, "lo", nftables.ChainHookPrerouting, nftables.ChainPriorityRaw, nftables.ChainTypeFilter, "")
	for _, d := range p.To {
		for _, s := range []side{asDst, asSrc} {
			for _, m := range match(d, s, All, false) {
				b.rule(lo, fromLoopback, m, verdict(expr.VerdictDrop))
			}
		}
	}
	return nil
}

func (l PacketLoss) build(b *builder) error {
	if b.host {
		if err := tooBroad(l.To); err != nil {
			return err
		}
	}
	up := l.Direction != Downstream
	down := l.Direction != Upstream
	// judge drops percent % of what m selects and lets the rest go on
	// (accept: no later rule of this chain judges it again).
	judge := func(ch *nftables.Chain, prefix, m []expr.Any) {
		b.rule(ch, prefix, m, lose(l.Percent))
		b.rule(ch, prefix, m, verdict(expr.VerdictAccept))
	}
	fill := func(s side) func(*nftables.Chain) {
		return func(ch *nftables.Chain) {
			for _, d := range l.To {
				for _, m := range match(d, s, l.Protocol, true) {
					judge(ch, nil, m)
				}
			}
		}
	}
	if up {
		b.netdevChains(nftables.ChainHookEgress, "e", fill(asDst))
	}
	if down {
		b.netdevChains(nftables.ChainHookIngress, "i", fill(asSrc))
	}
	lo := b.chain(b.inet, "lo", nftables.ChainHookPrerouting, nftables.ChainPriorityRaw, nftables.ChainTypeFilter, "")
	for _, d := range l.To {
		if up {
			for _, m := range match(d, asDst, l.Protocol, false) {
				judge(lo, fromLoopback, m)
			}
		}
		if down {
			for _, m := range match(d, asSrc, l.Protocol, false) {
				judge(lo, fromLoopback, m)
			}
		}
	}
	return nil
}

func (r Redirect) build(b *builder) error {
	nat := b.chain(b.inet, "nat", nftables.ChainHookOutput, nftables.ChainPriorityNATDest, nftables.ChainTypeNAT, "")
	if r.Mark != 0 {
		b.rule(nat, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(r.Mark)},
		}, verdict(expr.VerdictAccept))
	}
	protos := []Protocol{r.Protocol}
	if r.Protocol == "" || r.Protocol == All {
		protos = []Protocol{TCP, UDP}
	}
	for _, d := range r.To {
		for _, p := range protos {
			for _, m := range match(d, asDst, p, false) {
				var fam []expr.Any
				if !d.Prefix.IsValid() {
					fam = familyMatch(unix.NFPROTO_IPV4)
				}
				b.rule(nat, fam, m, []expr.Any{
					&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Port)},
					&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
				})
			}
		}
	}
	return nil
}
