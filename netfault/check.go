package netfault

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lack is one thing this machine cannot do that some network fault needs.
type Lack struct {
	// Feature is a short name: "root", "namespaces", "nf_tables",
	// "netdev egress", "netdev ingress", "nat redirect", "numgen",
	// "reject", "veth", "bridge".
	Feature string
	// Needed says what is then impossible; Reason why, in a sentence.
	Needed string
	Reason string
}

func (l Lack) String() string { return l.Feature + ": " + l.Reason + " (needed by " + l.Needed + ")" }

// Lacks reports what this machine cannot do, before anything is touched:
// the probes run in a scratch network namespace that ends with them, and
// nothing of the host's is changed. nil means every network fault can run.
func Lacks(ctx context.Context) []Lack {
	var out []Lack
	capEff, err := effectiveCaps()
	switch {
	case err != nil:
		return []Lack{{"root", "every network fault", "cannot read this process's capabilities: " + err.Error()}}
	case capEff&(1<<unix.CAP_NET_ADMIN) == 0 || capEff&(1<<unix.CAP_SYS_ADMIN) == 0:
		return []Lack{{"root", "every network fault", "faultline runs without CAP_NET_ADMIN and CAP_SYS_ADMIN: run it as root"}}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return []Lack{{"namespaces", "every network fault", "this kernel has no network namespaces (/proc/self/ns/net: " + err.Error() + ")"}}
	}
	if err := ctx.Err(); err != nil {
		return []Lack{{"probe", "every network fault", err.Error()}}
	}
	// The probes run in a scratch namespace that nothing holds once they
	// are done, so it goes with them.
	var scratch *os.File
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		scratch, err = os.Open("/proc/thread-self/ns/net")
		return err
	}, func() error { return nil })
	if err != nil {
		if scratch != nil {
			scratch.Close()
		}
		return []Lack{{"namespaces", "every network fault", "cannot make a network namespace: " + err.Error()}}
	}
	defer scratch.Close()
	return append(out, probe(int(scratch.Fd()))...)
}

// probe tries, in the scratch namespace nsfd, each kernel feature.
func probe(nsfd int) []Lack {
	var out []Lack
	nl, err := netlink.NewHandleAt(netns.NsHandle(nsfd))
	if err != nil {
		return []Lack{{"netlink", "every network fault", "no rtnetlink in a namespace: " + err.Error()}}
	}
	defer nl.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}, PeerName: "probe1"}
	if err := nl.LinkAdd(veth); err != nil {
		out = append(out, Lack{"veth", "isolated network namespaces", "cannot make a veth pair: " + err.Error()})
	}
	if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "probebr"}}); err != nil {
		out = append(out, Lack{"bridge", "isolated network namespaces", "cannot make a bridge: " + err.Error()})
	}
	c, err := nftables.New(nftables.WithNetNSFd(nsfd))
	if err != nil {
		return append(out, Lack{"nf_tables", "partition, packet_loss, intercept", "no nf_tables netlink: " + err.Error()})
	}
	inet := c.AddTable(&nftables.Table{Name: "faultline_probe", Family: nftables.TableFamilyINet})
	netdev := c.AddTable(&nftables.Table{Name: "faultline_probe", Family: nftables.TableFamilyNetdev})
	if err := c.Flush(); err != nil {
		return append(out, Lack{"nf_tables", "partition, packet_loss, intercept", "this kernel has no nf_tables inet and netdev tables: " + err.Error()})
	}
	try := func(feature, needed, what string, add func()) {
		add()
		if err := c.Flush(); err != nil {
			out = append(out, Lack{feature, needed, fmt.Sprintf("this kernel cannot %s: %v", what, err)})
		}
	}
	dev := "lo"
	if _, err := nl.LinkByName("probe0"); err == nil {
		dev = "probe0"
	}
	try("netdev egress", "partition (reject: false), packet_loss upstream", "hook a netdev chain on egress", func() {
		c.AddChain(&nftables.Chain{Name: "e", Table: netdev, Hooknum: nftables.ChainHookEgress, Priority: nftables.ChainPriorityFilter, Type: nftables.ChainTypeFilter, Device: dev})
	})
	try("netdev ingress", "partition (reject: false), packet_loss downstream", "hook a netdev chain on ingress", func() {
		c.AddChain(&nftables.Chain{Name: "i", Table: netdev, Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFilter, Type: nftables.ChainTypeFilter, Device: dev})
	})
	filter := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: inet, Hooknum: hook, Priority: nftables.ChainPriorityFilter, Type: nftables.ChainTypeFilter})
		if err := c.Flush(); err != nil {
			out = append(out, Lack{"nf_tables", "partition, packet_loss", "cannot add an inet filter chain: " + err.Error()})
			return nil
		}
		return ch
	}
	if ch := filter("numgen", nftables.ChainHookPrerouting); ch != nil {
		try("numgen", "packet_loss", "draw random numbers in a rule (numgen)", func() {
			c.AddRule(&nftables.Rule{Table: inet, Chain: ch, Exprs: lose(1)})
		})
	}
	if ch := filter("reject", nftables.ChainHookOutput); ch != nil {
		try("reject", "partition (reject: true)", "reject packets with a TCP reset or ICMP", func() {
			c.AddRule(&nftables.Rule{Table: inet, Chain: ch, Exprs: slices.Concat(l4Match(unix.IPPROTO_TCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})})
			c.AddRule(&nftables.Rule{Table: inet, Chain: ch, Exprs: []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}})
		})
	}
	try("nat redirect", "intercept, dns intercept", "redirect connections (nat output chain with redirect)", func() {
		r := Redirect{To: []Dest{{Port: 9}}, Protocol: All, Port: 9, Mark: Mark}
		_ = r.build(&builder{c: c, inet: inet, fault: "probe"})
	})
	return out
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}
