package proxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer accepts connections on loopback and echoes every byte back;
// when the client half-closes, it finishes echoing and closes.
func echoServer(t testing.TB) string {
	t.Helper()
	return server(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// server runs handle for each connection on a loopback listener until the
// test ends.
func server(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

func roundTrip(t testing.TB, c net.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	c := dial(t, p.Listen())
	for _, msg := range []string{"hello", "world", string(bytes.Repeat([]byte("x"), 1<<20))} {
		roundTrip(t, c, []byte(msg))
	}
}

func TestHalfClosePassesThrough(t *testing.T) {
	for _, withToxic := range []bool{false, true} {
		name := "splice"
		if withToxic {
			name = "toxics"
		}
		t.Run(name, func(t *testing.T) {
			// The server reads to EOF, then answers: this only works if
			// the client's FIN reaches it while the other way stays open.
			up := server(t, func(c net.Conn) {
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("got "), b...))
			})
			p := proxytest.New(t, up)
			if withToxic {
				proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.Latency{Delay: time.Millisecond}})
				proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.Noop{}})
			}
			c := dial(t, p.Listen())
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "got hello" {
				t.Fatalf("reply after half-close = %q, want %q", got, "got hello")
			}
		})
	}
}

func TestLatencyDelaysEachDirection(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	c := dial(t, p.Listen())
	roundTrip(t, c, []byte("warm"))
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.Latency{Delay: 100 * time.Millisecond}})
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Downstream, Effect: proxy.Latency{Delay: 50 * time.Millisecond}})
	start := time.Now()
	roundTrip(t, c, []byte("ping"))
	// A lower bound only: the toxic must have delayed the bytes at least
	// this long; a loaded machine may add any amount on top.
	if got := time.Since(start); got < 150*time.Millisecond {
		t.Fatalf("round trip with 100ms+50ms latency took %v, want >= 150ms", got)
	}
	if err := p.RemoveToxic("latency_upstream"); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveToxic("latency_downstream"); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("after"))
}

func TestByteIntegrityWhileToxicsChange(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	const conns, size = 4, 4 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	stop := make(chan struct{})
	for range conns {
		c := dial(t, p.Listen())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoAndCompare(c, size)
		}()
	}
	// Change the toxics on the live connections until the data is through.
	changer := make(chan int)
	go func() {
		n := 0
		defer func() { changer <- n }()
		effects := []proxy.Effect{
			proxy.Latency{Delay: time.Millisecond, Jitter: time.Millisecond},
			proxy.Noop{},
			proxy.Slicer{AverageSize: 1000, SizeVariation: 500},
			proxy.Bandwidth{Rate: 1 << 30},
			proxy.LimitData{Bytes: 1 << 40},
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := effects[i%len(effects)]
			s := proxy.Stream(i % 2)
			tx, err := p.AddToxic(proxy.Toxic{Stream: s, Effect: e})
			if err != nil {
				continue
			}
			if i%3 == 0 {
				_, _ = p.UpdateToxic(proxy.Toxic{Name: tx.Name, Effect: e})
			}
			if i%2 == 1 {
				p.RemoveAllToxics()
			}
			n++
		}
	}()
	wg.Wait()
	close(stop)
	changes := <-changer
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if changes < 10 {
		t.Errorf("only %d toxic changes happened during the transfer; the test proved little", changes)
	}
}

// echoAndCompare sends size random bytes through c and checks that the
// same bytes come back, by SHA-256.
func echoAndCompare(c *net.TCPConn, size int) error {
	data := make([]byte, size)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("echoed bytes differ from the bytes sent")
	}
	return nil
}

func TestResetPeerSendsRST(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.ResetPeer{}})
	c := dial(t, p.Listen())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after reset_peer: %v, want ECONNRESET", err)
	}
}

func TestTimeoutRemovalClosesHeldConnections(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.Timeout{}})
	c := dial(t, p.Listen())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitConns(t, p, 1)
	if err := p.RemoveToxic("timeout_downstream"); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after removing timeout = %d, %v; want EOF", n, err)
	}
}

func TestTimeoutClosesAfterSilence(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.Timeout{Timeout: 50 * time.Millisecond}})
	c := dial(t, p.Listen())
	start := time.Now()
	_, _ = c.Write([]byte("swallowed"))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read = %d, %v; want EOF once the timeout fired", n, err)
	}
	if got := time.Since(start); got < 50*time.Millisecond {
		t.Fatalf("closed after %v, before the 50ms timeout", got)
	}
}

func TestLimitDataClosesAfterBytes(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.LimitData{Bytes: 10}})
	c := dial(t, p.Listen())
	_, _ = c.Write([]byte("0123456789abcdef"))
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	if string(got) != "0123456789" {
		t.Fatalf("got %q, want the first 10 bytes", got)
	}
}

func TestBandwidthLimitsRate(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	c := dial(t, p.Listen())
	roundTrip(t, c, []byte("warm"))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.Bandwidth{Rate: 100}}) // 100 KB/s
	start := time.Now()
	roundTrip(t, c, make([]byte, 20_000)) // 200 ms at that rate
	if got := time.Since(start); got < 190*time.Millisecond {
		t.Fatalf("20 KB at 100 KB/s took %v, want >= 190ms", got)
	}
}

func TestSlicerKeepsBytes(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.Slicer{AverageSize: 10, SizeVariation: 5, Delay: 10 * time.Microsecond}})
	c := dial(t, p.Listen())
	msg := make([]byte, 3000)
	_, _ = rand.Read(msg)
	roundTrip(t, c, msg)
}

func TestSlowCloseDelaysFIN(t *testing.T) {
	up := server(t, func(c net.Conn) {}) // closes at once
	p := proxytest.New(t, up)
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.SlowClose{Delay: 100 * time.Millisecond}})
	start := time.Now() // before the dial: the upstream closes as soon as it is reached
	c := dial(t, p.Listen())
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read = %d, %v; want EOF", n, err)
	}
	if got := time.Since(start); got < 100*time.Millisecond {
		t.Fatalf("EOF after %v, want >= 100ms", got)
	}
}

func TestDisabledProxyRefusesAndClosesConnections(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	c := dial(t, p.Listen())
	roundTrip(t, c, []byte("x"))
	addr := p.Listen()
	if err := p.Update(addr, p.Upstream(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the proxy was disabled")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("disabled proxy still accepts connections")
	}
	if err := p.Update(addr, p.Upstream(), true); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, addr), []byte("back"))
}

func TestToxicityZeroNeverApplies(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	zero := float32(0)
	proxytest.AddToxic(t, p, proxy.Toxic{Toxicity: &zero, Effect: proxy.Timeout{}})
	roundTrip(t, dial(t, p.Listen()), []byte("passes"))
}

func TestManyConcurrentConnections(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	const n = 1000
	cs := make([]*net.TCPConn, n)
	for i := range cs {
		cs[i] = dial(t, p.Listen())
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{byte(i), byte(i >> 8), 'x'}
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- errors.New("wrong echo")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := p.NumConns(); got != n {
		t.Fatalf("NumConns = %d, want %d", got, n)
	}
}

func waitConns(t *testing.T, p *proxy.Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.NumConns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("NumConns = %d, want %d", p.NumConns(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRemovingSlowCloseReleasesTheEnd(t *testing.T) {
	up := server(t, func(c net.Conn) {}) // closes at once
	p := proxytest.New(t, up)
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.SlowClose{Delay: time.Hour}})
	c := dial(t, p.Listen())
	waitConns(t, p, 1)
	if err := p.RemoveToxic("slow_close_downstream"); err != nil {
		t.Fatal(err)
	}
	// The connection's deadline is 30 s: an end held for the hour fails here.
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after removing slow_close = %d, %v; want EOF", n, err)
	}
}

func TestToxicityIsDrawnPerConnection(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	half := float32(0.5)
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Toxicity: &half, Effect: proxy.ResetPeer{}})
	const n = 200
	reset := 0
	for range n {
		c := dial(t, p.Listen())
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		switch {
		case err == nil:
		case errors.Is(err, syscall.ECONNRESET) || err == io.EOF:
			reset++
		default:
			t.Fatal(err)
		}
		c.Close()
	}
	// Binomial(200, 0.5): outside 60..140 has a probability below 1e-8.
	if reset < 60 || reset > 140 {
		t.Fatalf("%d of %d connections reset with toxicity 0.5", reset, n)
	}
}

// TestBulkThroughToxicsKeepsBytes sends bulk data through toxics that only
// cut and time it (the path that moves waiting bytes kernel to kernel).
func TestBulkThroughToxicsKeepsBytes(t *testing.T) {
	p := proxytest.New(t, echoServer(t))
	for _, s := range []proxy.Stream{proxy.Upstream, proxy.Downstream} {
		proxytest.AddToxic(t, p, proxy.Toxic{Stream: s, Name: "l" + s.String(), Effect: proxy.Latency{}})
		proxytest.AddToxic(t, p, proxy.Toxic{Stream: s, Name: "b" + s.String(), Effect: proxy.Bandwidth{Rate: 100_000_000}})
		proxytest.AddToxic(t, p, proxy.Toxic{Stream: s, Name: "d" + s.String(), Effect: proxy.LimitData{Bytes: 1 << 60}})
	}
	if err := echoAndCompare(dial(t, p.Listen()), 32<<20); err != nil {
		t.Fatal(err)
	}
}

func TestBulkLimitDataCutsExactly(t *testing.T) {
	const limit = 300_001
	got := make(chan int64, 1)
	up := server(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	p := proxytest.New(t, up)
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.LimitData{Bytes: limit}})
	c := dial(t, p.Listen())
	_, _ = c.Write(make([]byte, 4<<20)) // fails once the proxy closes: expected
	select {
	case n := <-got:
		if n != limit {
			t.Fatalf("upstream got %d bytes, want exactly %d", n, limit)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream connection was not closed after the limit")
	}
}

// A slicer that cuts every byte into a piece of its own, 1 s apart, holds
// no more than the queue's 8 MiB per connection and direction, pieces
// included, however much its clients push: two clients pushing 13.7 MB
// each through it grow the heap by well under 2 × 8 MiB.
func TestSlicerQueueStaysWithinItsMemory(t *testing.T) {
	sink := server(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	p := proxytest.New(t, sink)
	proxytest.AddToxic(t, p, proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.Slicer{AverageSize: 1, Delay: time.Second}})
	data := make([]byte, 13_700_000)
	live := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := live()
	var clients []*net.TCPConn
	for range 2 {
		c := dial(t, p.Listen())
		clients = append(clients, c)
		go func() { _, _ = c.Write(data) }() // blocks once the proxy stops reading; ends at close
	}
	// Wait until the proxy has stopped taking more: the heap holds still.
	grown, last, still := int64(0), before, 0
	for deadline := time.Now().Add(30 * time.Second); still < 5; time.Sleep(200 * time.Millisecond) {
		now := live()
		grown = now - before
		if grown > 200<<20 {
			break // far past any bound: no need to wait for all of it
		}
		if now-last < 1<<20 {
			still++
		} else {
			still = 0
		}
		last = now
		if time.Now().After(deadline) {
			t.Fatalf("the heap still grows after 30 s (%d MiB)", grown>>20)
		}
	}
	for _, c := range clients {
		c.Close()
	}
	if limit := int64(2*8<<20 + 4<<20); grown > limit {
		t.Fatalf("two clients pushing through a 1-byte slicer grew the heap by %d MiB, over %d MiB", grown>>20, limit>>20)
	}
	t.Logf("heap grew by %.1f MiB", float64(grown)/(1<<20))
}
