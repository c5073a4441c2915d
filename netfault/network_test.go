package netfault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// serveHTTP serves "hello from NAME" on ln until the test ends.
func serveHTTP(t *testing.T, ln net.Listener, name string) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", name)
	}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// hostState is what a run must leave as it found it.
type hostState struct {
	ipForward string
	loAddrs   string
	routes    string
}

func readHostState(t *testing.T) hostState {
	t.Helper()
	fw, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var def []string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			def = append(def, r.String())
		}
	}
	return hostState{ipForward: string(fw), loAddrs: fmt.Sprint(addrs), routes: strings.Join(def, "\n")}
}

func TestIsolatedNetwork(t *testing.T) {
	before := readHostState(t)
	r := newRun(t)
	nw, insts := r.network(2)
	if !DefaultRange.Contains(nw.Subnet.Addr()) || nw.Subnet.Bits() != 24 {
		t.Errorf("subnet %s: want a /24 inside %s", nw.Subnet, DefaultRange)
	}
	for _, inst := range insts {
		if host, err := inst.NS.IsHost(); err != nil || host {
			t.Errorf("%s.IsHost() = %v, %v; want false", inst.NS, host, err)
		}
	}
	// A host service on the bridge's address, one in the second instance.
	hostLn, err := net.Listen("tcp4", net.JoinHostPort(nw.Host.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, hostLn, "host")
	nsLn, err := ListenTCP(insts[1].NS, "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, nsLn, "instance 1")

	for _, c := range []struct{ url, want string }{
		{"http://" + hostLn.Addr().String() + "/", "hello from host"},
		{fmt.Sprintf("http://%s:8080/", insts[1].Addr), "hello from instance 1"},
	} {
		out, code := runIn(t, insts[0].NS, 20*time.Second, "curl", "-sS", "--noproxy", "*", "--max-time", "10", c.url)
		if code != 0 || out != c.want {
			t.Errorf("curl %s in instance 0 = %q (exit %d), want %q", c.url, out, code, c.want)
		}
	}
	// The executed command is the process itself, in the namespace.
	out, code := runIn(t, insts[0].NS, 10*time.Second, "sh", "-c", "readlink /proc/$$/ns/net")
	if want := fmt.Sprintf("net:[%d]", insts[0].NS.Ino); code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("namespace of the command = %q (exit %d), want %s", out, code, want)
	}
	r.undoAll()
	assertClean(t, r.id)
	if after := readHostState(t); after != before {
		t.Errorf("host state changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestUndoIsIdempotent(t *testing.T) {
	r := newRun(t)
	_, insts := r.network(1)
	r.tables(insts[0].NS)
	r.inject(insts[0].NS, "p", Partition{To: []Dest{mustDest(t, ":80")}})
	ops := r.ops
	r.undoAll()
	for _, op := range ops { // again: all gone, all fine
		if err := Undo(context.Background(), op); err != nil {
			t.Errorf("second Undo(%s) = %v, want nil", op, err)
		}
	}
}

func TestNamespaceIdentity(t *testing.T) {
	r := newRun(t)
	host, err := HostNS()
	if err != nil {
		t.Fatal(err)
	}
	if h, err := host.IsHost(); err != nil || !h {
		t.Errorf("HostNS().IsHost() = %v, %v; want true", h, err)
	}
	me, err := PidNS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !me.Same(host) {
		t.Skip("the test does not run in the host's namespace")
	}
	// A namespace bound at a path, removed, and a new one at the same path:
	// the old record no longer opens, and its Undo leaves the new one.
	path := NamespacePath(r.id, 7)
	old, err := createNamespace(path)
	if err != nil {
		t.Fatal(err)
	}
	oldOp := Op{Kind: KindNamespace, Run: r.id, NS: old}
	if err := Undo(context.Background(), oldOp); err != nil {
		t.Fatal(err)
	}
	if err := old.Check(); !errors.Is(err, ErrGone) {
		t.Errorf("Check() of a removed namespace = %v, want ErrGone", err)
	}
	fresh, err := createNamespace(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = r.journal(Op{Kind: KindNamespace, Run: r.id, NS: fresh})
	if fresh.Same(old) {
		t.Fatalf("new namespace has the old identity %s", old)
	}
	if err := old.Check(); !errors.Is(err, ErrReplaced) {
		t.Errorf("Check() of a replaced namespace = %v, want ErrReplaced", err)
	}
	if _, err := Tables(context.Background(), old, r.id, r.journal); !errors.Is(err, ErrReplaced) {
		t.Errorf("Tables in a replaced namespace = %v, want ErrReplaced", err)
	}
	if err := Undo(context.Background(), oldOp); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Check(); err != nil {
		t.Errorf("Undo of the old namespace's op touched the new one: %v", err)
	}
}

func mustDest(t *testing.T, s string) Dest {
	t.Helper()
	d, err := ParseDest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
