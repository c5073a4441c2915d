package stress_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/stress"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// holdThen runs a stress, waits until it is ready, calls check, then ends it.
func holdThen(t *testing.T, run func(ctx context.Context, ready func()) (stress.Result, error), check func()) stress.Result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	type out struct {
		res stress.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := run(ctx, func() { close(ready) })
		done <- out{res, err}
	}()
	select {
	case <-ready:
	case o := <-done:
		t.Fatalf("ended before ready: %v", o.err)
	case <-time.After(60 * time.Second):
		t.Fatal("not ready after 60 s")
	}
	if check != nil {
		check()
	}
	cancel()
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.res
}

func TestCPU(t *testing.T) {
	res := holdThen(t, func(ctx context.Context, ready func()) (stress.Result, error) {
		return stress.CPU(ctx, 1, 80, ready)
	}, func() { time.Sleep(time.Second) }) // hold for a second: what is measured
	if res.CPU < 0.05 || res.CPU > 1.5 || res.Held < 0.9 {
		t.Errorf("one worker at 80%%: %.2f cores over %.1f s", res.CPU, res.Held)
	}
	if _, err := stress.CPU(context.Background(), 0, 50, nil); err == nil {
		t.Error("0 workers accepted")
	}
}

func TestMemory(t *testing.T) {
	const size = 64 << 20
	res := holdThen(t, func(ctx context.Context, ready func()) (stress.Result, error) {
		return stress.Memory(ctx, size, 0, ready)
	}, nil)
	if res.RSS < size {
		t.Errorf("RSS %s, want at least %s resident", stress.FormatSize(res.RSS), stress.FormatSize(size))
	}
}

// memInfo reads a /proc/meminfo line in bytes.
func memInfo(t *testing.T, key string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/meminfo", key)
	return 0
}

// A memory stress is compared with what can be taken now, not with all
// the machine has.
func TestMemoryRefusesMoreThanIsAvailable(t *testing.T) {
	total, avail := memInfo(t, "MemTotal"), memInfo(t, "MemAvailable")
	if total-avail < 256<<20 {
		t.Skipf("MemAvailable (%s) is too close to MemTotal (%s) to ask for a size between them", stress.FormatSize(avail), stress.FormatSize(total))
	}
	size := avail + (total-avail)/2
	_, err := stress.Memory(context.Background(), size, 0, nil)
	if !errors.Is(err, stress.ErrRefused) || !strings.Contains(err.Error(), "available") {
		t.Fatalf("Memory(%s) with %s available = %v, want refused", stress.FormatSize(size), stress.FormatSize(avail), err)
	}
}

// A tmpfs holds its files in memory: a fill larger than the memory
// available is refused before a byte is written, whatever the tmpfs's
// size says.
func TestFillOfAFileSystemInMemoryCountsAsMemory(t *testing.T) {
	avail := memInfo(t, "MemAvailable")
	dir := tmpfs(t, strconv.FormatInt((avail+(1<<30))>>20, 10)+"m")
	_, err := stress.Fill(context.Background(), stress.FillConfig{Dir: dir, Free: 1}, nil)
	if !errors.Is(err, stress.ErrRefused) || !strings.Contains(err.Error(), "is in memory (tmpfs)") {
		t.Fatalf("fill of a tmpfs larger than the memory available: %v, want refused", err)
	}
	if f := free(t, dir); f < avail {
		t.Errorf("the refused fill wrote to the tmpfs: %s free", stress.FormatSize(f))
	}
}

// tmpfs mounts a small file system for the test (root only).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

func free(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

func TestFillLeavesWhatWasAskedAndCleansUp(t *testing.T) {
	dir := tmpfs(t, "16m")
	file := filepath.Join(dir, "fill")
	res := holdThen(t, func(ctx context.Context, ready func()) (stress.Result, error) {
		return stress.Fill(ctx, stress.FillConfig{Dir: dir, File: file, Free: 2 << 20}, ready)
	}, func() {
		if f := free(t, dir); f > 2<<20+1<<20 || f < 1<<20 {
			t.Errorf("while held: %s free, want about 2 MiB", stress.FormatSize(f))
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("fill file: %v", err)
		}
	})
	if res.Bytes < 12<<20 || res.File != file {
		t.Errorf("result: %+v", res)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fill file left behind: %v", err)
	}
	if f := free(t, dir); f < 15<<20 {
		t.Errorf("after: %s free, want the 16 MiB back", stress.FormatSize(f))
	}
}

func TestFillRefusesTheRootFileSystem(t *testing.T) {
	_, err := stress.Fill(context.Background(), stress.FillConfig{Dir: "/", Fill: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "root file system") {
		t.Errorf("fill of /: %v", err)
	}
	_, err = stress.Fill(context.Background(), stress.FillConfig{Dir: t.TempDir(), Fill: 1, Free: 1, AllowRoot: true}, nil)
	if !errors.Is(err, stress.ErrRefused) || !strings.Contains(err.Error(), "exactly one") {
		t.Errorf("two amounts: %v, want refused", err)
	}
}

// The fill file must be on the file system measured and checked: one on
// another (the root one, here) is refused before a byte is written.
func TestFillRefusesAFileElsewhere(t *testing.T) {
	dir := tmpfs(t, "4m")
	elsewhere := filepath.Join(t.TempDir(), "fill") // not on the tmpfs
	_, err := stress.Fill(context.Background(), stress.FillConfig{Dir: dir, File: elsewhere, Fill: 1 << 20}, nil)
	if !errors.Is(err, stress.ErrRefused) || !strings.Contains(err.Error(), "not on the file system of") {
		t.Errorf("a fill file on another file system: %v, want refused", err)
	}
	if _, err := os.Stat(elsewhere); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused fill left its file: %v", err)
	}
}

// A path that leads to the root file system through a symbolic link on
// another mount is refused as / itself is.
func TestFillRefusesRootThroughALink(t *testing.T) {
	target := t.TempDir()
	var st, root syscall.Stat_t
	if syscall.Stat(target, &st) != nil || syscall.Stat("/", &root) != nil || st.Dev != root.Dev {
		t.Skip("the temporary directory is not on the root file system here")
	}
	link := filepath.Join(tmpfs(t, "1m"), "lnk")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a fill let through holds until then
	defer cancel()
	_, err := stress.Fill(ctx, stress.FillConfig{Dir: link, Fill: 1 << 20}, nil)
	if err == nil || !strings.Contains(err.Error(), "root file system") {
		t.Errorf("fill through a link to /: %v, want refused", err)
	}
}

func TestConnectionsTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var open atomic.Int64
	closed := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open.Add(1)
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
				open.Add(-1)
				closed <- struct{}{}
			}()
		}
	}()
	res := holdThen(t, func(ctx context.Context, ready func()) (stress.Result, error) {
		return stress.Connections(ctx, stress.ConnConfig{Address: ln.Addr().String(), Count: 20, Mode: "slow"}, ready)
	}, func() {
		deadline := time.Now().Add(10 * time.Second)
		for open.Load() != 20 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling the server's count
		}
		if n := open.Load(); n != 20 {
			t.Errorf("server sees %d connections, want 20", n)
		}
	})
	if res.Conns != 20 {
		t.Errorf("held %d", res.Conns)
	}
	for range 20 {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("connections not closed after the end: %d open", open.Load())
		}
	}
}

// Sessions count against max_connections; a slot that another client
// holds when the stress begins, and gives back later, is taken too.
// A connection the server closes is not held any more: the stress opens
// another, so the server ends up holding the count asked for.
func TestConnectionsReopenWhatTheServerCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var open, accepted atomic.Int64
	var kept sync.WaitGroup
	defer kept.Wait()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if accepted.Add(1) <= 5 { // the first five: closed at once
				c.Close()
				continue
			}
			open.Add(1)
			kept.Go(func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
				open.Add(-1)
			})
		}
	}()
	holdThen(t, func(ctx context.Context, ready func()) (stress.Result, error) {
		return stress.Connections(ctx, stress.ConnConfig{Address: ln.Addr().String(), Count: 10, Mode: "idle"}, ready)
	}, func() {
		processtest.WaitFor(t, "10 connections held", func() bool { return open.Load() == 10 })
	})
}

// Against a server that closes every connection at once, the stress
// neither keeps the closed sockets open nor hammers the server.
func TestConnectionsAgainstAServerThatClosesAll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	before := fds()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // two seconds of it
	defer cancel()
	var most atomic.Int64 // the most descriptors seen open while it runs
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			if n := int64(fds()); n > most.Load() {
				most.Store(n)
			}
			time.Sleep(50 * time.Millisecond) // sampling, not waiting for anything
		}
	}()
	_, err = stress.Connections(ctx, stress.ConnConfig{Address: ln.Addr().String(), Count: 10, Mode: "idle"}, func() {})
	<-watched
	if err != nil {
		t.Fatal(err)
	}
	if n := most.Load(); n > int64(before+30) {
		t.Errorf("%d descriptors open during the stress (%d before): closed connections are kept", n, before)
	}
	if n := accepted.Load(); n > 200 {
		t.Errorf("%d connections in 2 s against a server that closes them all: no backing off", n)
	}
}

func TestConnectionsPostgres(t *testing.T) {
	if _, err := shop.FindPostgres(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	const slots = 10
	pg, err := shop.StartPostgres(context.Background(), shop.PostgresConfig{MaxConnections: slots})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	db, err := sql.Open("pgx", pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the test's own session: one slot
	sessions := func() int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sessions()
	other, err := pgx.Connect(context.Background(), pg.URL("postgres")) // another client, for a while
	if err != nil {
		t.Fatal(err)
	}
	res := holdThen(t, func(ctx context.Context, ready func()) (stress.Result, error) {
		return stress.Connections(ctx, stress.ConnConfig{Protocol: "postgres", DSN: pg.URL("postgres"), Count: slots}, ready)
	}, func() {
		if n := sessions(); n != slots {
			t.Errorf("%d sessions, want every slot (%d) taken", n, slots)
		}
		_ = other.Close(context.Background())
		// The slot it gave back is the stress's now: every slot taken
		// again, one more of them by the stress. A session counts once it
		// is idle, its start-up done: a backend is listed while the
		// client is still authenticating, and the stress counts a
		// connection once it is open.
		processtest.WaitFor(t, "the freed slot taken", func() bool {
			var mine int
			err := db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'idle' AND pid <> pg_backend_pid()").Scan(&mine)
			return err == nil && mine == slots-1
		})
	})
	if res.Conns != slots-1 {
		t.Errorf("held %d at most, want %d", res.Conns, slots-1)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "1GiB": 1 << 30, "100MB": 100e6, "4096": 4096, "1.5KiB": 1536, "2 MiB": 2 << 20} {
		if got, err := stress.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1MiB", "1XB", "NaN", "nanMiB"} {
		if _, err := stress.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GiB", "100MB", "0", "-1", "1e30GiB", "MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := stress.ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}
