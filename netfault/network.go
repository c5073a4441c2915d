package netfault

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	netnsDir = "/run/netns"
	// DeviceName is the name of an isolated namespace's end of its veth.
	DeviceName = "eth0"
	// maxInstances bounds an instance's number so that its veth's name
	// fits in 15 characters.
	maxInstances = 1000
)

// DefaultRange is where a run's subnet is taken from when none is given:
// the range reserved for network tests (RFC 2544).
var DefaultRange = netip.MustParsePrefix("198.18.0.0/15")

// Network is a run's isolated network: a bridge in faultline's own network
// namespace holding Host, and per instance a namespace whose veth reaches
// the bridge. Namespaces on it reach each other and the host's services
// listening on Host (or on every address); nothing is routed off the
// machine: IPv4 forwarding is off on the bridge (the host's ip_forward is
// not touched), and no address is translated.
type Network struct {
	Run    string
	Bridge string       // interface name, flb-<id>
	Subnet netip.Prefix // IPv4
	Host   netip.Addr   // the bridge's address: the subnet's first
}

// Instance is one isolated namespace on a Network.
type Instance struct {
	Index int
	NS    NS
	Addr  netip.Addr // on DeviceName in the namespace
	Veth  string     // the host end of its veth pair, on the bridge
}

// shortID is the part of interface names that stands for the run: the
// run id itself when short and plain, else 8 hex digits of its hash.
func shortID(run string) string {
	if len(run) <= 8 && regexp.MustCompile(`^[a-z0-9]+$`).MatchString(run) {
		return run
	}
	sum := sha256.Sum256([]byte(run))
	return hex.EncodeToString(sum[:4])
}

// BridgeName is the name of a run's bridge.
func BridgeName(run string) string { return "flb-" + shortID(run) }

// VethName is the name of the host end of instance i's veth.
func VethName(run string, i int) string { return "flv" + shortID(run) + "-" + strconv.Itoa(i) }

// NamespacePath is where instance i's namespace is bound.
func NamespacePath(run string, i int) string {
	return filepath.Join(netnsDir, fmt.Sprintf("faultline-%s-%d", run, i))
}

// linkAlias marks the interfaces a run made, so that Undo deletes only
// those.
func linkAlias(run string) string { return "faultline " + run }

// NewNetwork plans a run's network; nothing is made until Create. With an
// invalid (zero) subnet it picks a /24 inside DefaultRange, chosen from the
// run id, that no address or route of faultline's namespace overlaps.
func NewNetwork(run string, subnet netip.Prefix) (*Network, error) {
	if !validName(run) {
		return nil, fmt.Errorf("run id %q: want 1 to 64 of a-z, A-Z, 0-9, - and _", run)
	}
	used, err := usedPrefixes()
	if err != nil {
		return nil, err
	}
	if subnet.IsValid() {
		subnet = subnet.Masked()
		if !subnet.Addr().Is4() || subnet.Bits() < 8 || subnet.Bits() > 29 {
			return nil, fmt.Errorf("subnet %s: want an IPv4 prefix from /8 to /29", subnet)
		}
		for _, u := range used {
			if u.Overlaps(subnet) {
				return nil, fmt.Errorf("subnet %s overlaps %s, which this machine already uses", subnet, u)
			}
		}
	} else {
		sum := sha256.Sum256([]byte(run))
		n := 1 << (24 - DefaultRange.Bits())
		start := int(binary.BigEndian.Uint32(sum[:4]) % uint32(n))
		base := binary.BigEndian.Uint32(DefaultRange.Addr().AsSlice())
	pick:
		for k := range n {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], base+uint32((start+k)%n)<<8)
			cand := netip.PrefixFrom(netip.AddrFrom4(b), 24)
			for _, u := range used {
				if u.Overlaps(cand) {
					continue pick
				}
			}
			subnet = cand
			break
		}
		if !subnet.IsValid() {
			return nil, fmt.Errorf("no free /24 left in %s", DefaultRange)
		}
	}
	return &Network{Run: run, Bridge: BridgeName(run), Subnet: subnet, Host: subnet.Addr().Next()}, nil
}

// usedPrefixes lists the IPv4 addresses' prefixes and routes of faultline's
// namespace.
func usedPrefixes() ([]netip.Prefix, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if p, ok := toPrefix(r.Dst); ok && p.Bits() > 0 {
			out = append(out, p)
		}
	}
	return out, nil
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// Addr returns the address of instance i.
func (n *Network) Addr(i int) (netip.Addr, error) {
	a := n.Host
	for range i + 1 {
		a = a.Next()
	}
	if i < 0 || i >= maxInstances || !n.Subnet.Contains(a) || !n.Subnet.Contains(a.Next()) {
		return netip.Addr{}, fmt.Errorf("instance %d: no address left in %s", i, n.Subnet)
	}
	return a, nil
}

// selfNS records faultline's own network namespace, where bridges and the
// host ends of veths live: the calling thread's, which is the process's
// for any goroutine that did not lock its thread.
func selfNS() (NS, error) { return OpenNS("/proc/thread-self/ns/net") }

// BridgeOp is the Op that Create journals.
func (n *Network) BridgeOp() (Op, error) {
	self, err := selfNS()
	return Op{Kind: KindBridge, Run: n.Run, NS: self, Link: n.Bridge}, err
}

// Create makes the bridge, after journaling BridgeOp. On an error what was
// made is removed again.
func (n *Network) Create(ctx context.Context, j Journal) (err error) {
	op, err := n.BridgeOp()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := j.record(op); err != nil {
		return err
	}
	defer undoOnError(op, &err)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", n.Bridge, err)
	}
	if err := netlink.LinkSetAlias(br, linkAlias(n.Run)); err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	// Nothing that arrives on the bridge is forwarded elsewhere, whatever
	// the host's ip_forward; the bridge has no IPv6.
	if err := writeSysctl("net/ipv4/conf/"+n.Bridge+"/forwarding", "0"); err != nil {
		return err
	}
	_ = writeSysctl("net/ipv6/conf/"+n.Bridge+"/disable_ipv6", "1")
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.Host.AsSlice(), Mask: net.CIDRMask(n.Subnet.Bits(), 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("bridge %s: address %s: %w", n.Bridge, addr, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s: up: %w", n.Bridge, err)
	}
	return nil
}

// undoOnError undoes op when *err is set.
func undoOnError(op Op, err *error) {
	if *err != nil {
		if uerr := Undo(context.Background(), op); uerr != nil {
			*err = errors.Join(*err, uerr)
		}
	}
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	return nil
}

// InstanceOps are the Ops that AddInstance journals, in order.
func (n *Network) InstanceOps(i int) ([]Op, error) {
	self, err := selfNS()
	if err != nil {
		return nil, err
	}
	return []Op{
		{Kind: KindNamespace, Run: n.Run, NS: NS{Path: NamespacePath(n.Run, i)}},
		{Kind: KindVeth, Run: n.Run, NS: self, Link: VethName(n.Run, i)},
	}, nil
}

// AddInstance makes instance i: its namespace (loopback up), a veth pair
// from the bridge to DeviceName in it with the instance's address, and a
// default route through the bridge's address. It journals the namespace
// and the veth each before making it (InstanceOps). The bridge must exist.
// On an error what was made is removed again.
func (n *Network) AddInstance(ctx context.Context, i int, j Journal) (inst Instance, err error) {
	addr, err := n.Addr(i)
	if err != nil {
		return inst, err
	}
	ops, err := n.InstanceOps(i)
	if err != nil {
		return inst, err
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return inst, fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if err := ctx.Err(); err != nil {
		return inst, err
	}
	if err := j.record(ops[0]); err != nil {
		return inst, err
	}
	defer undoOnError(ops[0], &err)
	ns, err := createNamespace(ops[0].NS.Path)
	if err != nil {
		return inst, err
	}
	if err := ctx.Err(); err != nil {
		return inst, err
	}
	if err := j.record(ops[1]); err != nil {
		return inst, err
	}
	defer undoOnError(ops[1], &err)
	if err := n.plug(ns, ops[1].Link, br, addr); err != nil {
		return inst, err
	}
	return Instance{Index: i, NS: ns, Addr: addr, Veth: ops[1].Link}, nil
}

// plug makes the veth pair and sets up both of its ends.
func (n *Network) plug(ns NS, name string, br netlink.Link, addr netip.Addr) error {
	f, err := ns.open()
	if err != nil {
		return err
	}
	defer f.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		PeerName:      DeviceName,
		PeerNamespace: netlink.NsFd(int(f.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", name, err)
	}
	if err := netlink.LinkSetAlias(veth, linkAlias(n.Run)); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	_ = writeSysctl("net/ipv6/conf/"+name+"/disable_ipv6", "1")
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth %s: up: %w", name, err)
	}
	h, err := nlHandle(f)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("%s: lo: %w", ns, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("%s: lo up: %w", ns, err)
	}
	dev, err := h.LinkByName(DeviceName)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", ns, DeviceName, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(n.Subnet.Bits(), 32)}}
	if err := h.AddrAdd(dev, a); err != nil {
		return fmt.Errorf("%s: address %s: %w", ns, a, err)
	}
	if err := h.LinkSetUp(dev); err != nil {
		return fmt.Errorf("%s: %s up: %w", ns, DeviceName, err)
	}
	route := &netlink.Route{LinkIndex: dev.Attrs().Index, Gw: n.Host.AsSlice()}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("%s: default route via %s: %w", ns, n.Host, err)
	}
	return nil
}

// createNamespace makes a network namespace and binds it at path, as
// `ip netns add` does, and returns its identity.
func createNamespace(path string) (NS, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return NS{}, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return NS{}, fmt.Errorf("network namespace: %w", err)
	}
	f.Close()
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("new network namespace: %w", err)
		}
		return nil
	}, func() error {
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind network namespace at %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		_ = os.Remove(path)
		return NS{}, err
	}
	return OpenNS(path)
}

// deleteNamespace unbinds and removes a namespace file that faultline made,
// unless the path holds another namespace than the one recorded.
func deleteNamespace(op Op) error {
	path := op.NS.Path
	if filepath.Dir(path) != netnsDir || !strings.HasPrefix(filepath.Base(path), "faultline-"+op.Run+"-") {
		return fmt.Errorf("%s is not a namespace path of run %s", path, op.Run)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if isNSFS(path) == nil {
		if op.NS.Ino != 0 && (st.Dev != op.NS.Dev || st.Ino != op.NS.Ino) {
			return ErrReplaced
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unbind %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// deleteLink deletes a bridge or veth that the run made: an interface of
// that name whose alias is the run's (or empty: made, but not yet marked).
func deleteLink(op Op) error {
	f, err := op.NS.open()
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := nlHandle(f)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(op.Link)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return err
	}
	if a := link.Attrs().Alias; a != "" && a != linkAlias(op.Run) {
		return nil // another run's, or not faultline's
	}
	wantType := "bridge"
	if op.Kind == KindVeth {
		wantType = "veth"
	}
	if link.Type() != wantType {
		return nil
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", op.Link, err)
	}
	return nil
}
