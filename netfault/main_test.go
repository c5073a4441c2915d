package netfault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline/faultline/proxy"
	"github.com/google/nftables"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ExecSubcommand {
		err := ExecMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, "netns exec:", err)
		os.Exit(127)
	}
	if path := os.Getenv("NETFAULT_TEST_CRASH"); path != "" {
		crashingRunner(path)
		return
	}
	goleak.VerifyTestMain(m)
}

// needKernel skips a test that needs root and nf_tables when the machine
// has neither; under CI=true, a root machine must have every feature.
func needKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netfault needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run the tests as root")
	}
	lacks := Lacks(context.Background())
	if len(lacks) == 0 {
		return
	}
	var msgs []string
	for _, l := range lacks {
		msgs = append(msgs, l.String())
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("root, but this kernel lacks: %s", strings.Join(msgs, "; "))
	}
	t.Skipf("this kernel lacks: %s", strings.Join(msgs, "; "))
}

// testRun is one run of faultline as a test sees it: an id and a journal
// undone, last first, when the test ends, after which nothing of the run
// may be left.
type testRun struct {
	t   *testing.T
	id  string
	mu  sync.Mutex
	ops []Op
}

func newRun(t *testing.T) *testRun {
	t.Helper()
	needKernel(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	r := &testRun{t: t, id: "t" + hex.EncodeToString(b)}
	t.Cleanup(func() {
		r.undoAll()
		assertClean(t, r.id)
	})
	return r
}

func (r *testRun) journal(op Op) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	return nil
}

func (r *testRun) undoAll() {
	r.t.Helper()
	r.mu.Lock()
	ops := slices.Clone(r.ops)
	r.ops = nil
	r.mu.Unlock()
	for i := len(ops) - 1; i >= 0; i-- {
		if err := Undo(context.Background(), ops[i]); err != nil {
			r.t.Errorf("Undo(%s) = %v", ops[i], err)
		}
	}
}

// network makes the run's network with n instances.
func (r *testRun) network(n int) (*Network, []Instance) {
	r.t.Helper()
	nw, err := NewNetwork(r.id, netip.Prefix{})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx := context.Background()
	if err := nw.Create(ctx, r.journal); err != nil {
		r.t.Fatalf("Create: %v", err)
	}
	var insts []Instance
	for i := range n {
		inst, err := nw.AddInstance(ctx, i, r.journal)
		if err != nil {
			r.t.Fatalf("AddInstance(%d): %v", i, err)
		}
		insts = append(insts, inst)
	}
	return nw, insts
}

// tables makes the run's tables in ns.
func (r *testRun) tables(ns NS) {
	r.t.Helper()
	if _, err := Tables(context.Background(), ns, r.id, r.journal); err != nil {
		r.t.Fatalf("Tables(%s): %v", ns, err)
	}
}

// inject injects f and returns its Op.
func (r *testRun) inject(ns NS, name string, f Fault) Op {
	r.t.Helper()
	op, err := Inject(context.Background(), ns, r.id, name, f, r.journal)
	if err != nil {
		r.t.Fatalf("Inject(%s, %#v): %v", name, f, err)
	}
	return op
}

// assertClean fails unless nothing of the run is left: no namespace bound,
// no interface with its names or alias, no table of its name in the host's
// namespace; all listed through netlink and the file system.
func assertClean(t *testing.T, run string) {
	t.Helper()
	left, err := Leftovers(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		t.Errorf("left by run %s: %s", run, l)
	}
}

// tablesIn lists the names of the tables in ns.
func tablesIn(t *testing.T, ns NS) []string {
	t.Helper()
	f, err := ns.open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, tb.Name)
	}
	return out
}

// chainsIn lists the names of the chains of the run's tables in ns.
func chainsIn(t *testing.T, ns NS, run string) []string {
	t.Helper()
	f, err := ns.open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == TableName(run) {
			out = append(out, ch.Name)
		}
	}
	slices.Sort(out)
	return out
}

// self is the test binary, which runs ExecMain as the faultline binary
// would.
func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runIn runs a command inside ns and returns its combined output and exit
// code (-1 if it could not run or was killed at the deadline).
func runIn(t *testing.T, ns NS, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (scripts/deps.sh installs it)", name)
	}
	cmd := Command(self(t), ns, name, args...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns, err)
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return out.String(), ee.ExitCode()
	}
	return out.String(), -1
}

// crashingRunner is a runner that makes a network, tables and faults,
// journaling each op as a JSON line in path (synced before the change),
// says "ready" and waits to be killed.
func crashingRunner(path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash runner:", err)
		os.Exit(3)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fail(err)
	}
	j := func(op Op) error {
		b, err := json.Marshal(op)
		if err != nil {
			return err
		}
		if _, err := f.Write(append(b, '\n')); err != nil {
			return err
		}
		return f.Sync()
	}
	run := os.Getenv("NETFAULT_TEST_RUN")
	ctx := context.Background()
	nw, err := NewNetwork(run, netip.Prefix{})
	if err != nil {
		fail(err)
	}
	if err := nw.Create(ctx, j); err != nil {
		fail(err)
	}
	var insts []Instance
	for i := range 2 {
		inst, err := nw.AddInstance(ctx, i, j)
		if err != nil {
			fail(err)
		}
		insts = append(insts, inst)
	}
	host, err := HostNS()
	if err != nil {
		fail(err)
	}
	for _, ns := range []NS{insts[0].NS, host} {
		if _, err := Tables(ctx, ns, run, j); err != nil {
			fail(err)
		}
	}
	to := []Dest{{Prefix: netip.PrefixFrom(insts[1].Addr, 32), Port: 80}}
	if _, err := Inject(ctx, insts[0].NS, run, "part", Partition{To: to}, j); err != nil {
		fail(err)
	}
	if _, err := Inject(ctx, host, run, "loss", PacketLoss{Percent: 5, To: to}, j); err != nil {
		fail(err)
	}
	if _, _, err := InterceptTCP(ctx, insts[0].NS, run, "icpt", []Dest{{Port: 6379}}, proxy.Config{Name: "icpt"}, j); err != nil {
		fail(err)
	}
	fmt.Println("ready")
	select {}
}

func ioReadFull(r io.Reader, b []byte) (int, error) { return io.ReadFull(r, b) }

func t0() context.Context { return context.Background() }

func prefixOf(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
