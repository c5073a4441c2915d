package netfault

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/proxy"
)

// interceptPair makes two instances, a (the client side, intercepted) and
// b (the servers).
func interceptPair(t *testing.T) (*testRun, Instance, Instance) {
	r := newRun(t)
	_, insts := r.network(2)
	r.tables(insts[0].NS)
	return r, insts[0], insts[1]
}

func (r *testRun) interceptTCP(ns NS, name string, to ...string) *proxy.Proxy {
	r.t.Helper()
	dests, err := ParseDests(to)
	if err != nil {
		r.t.Fatal(err)
	}
	p, _, err := InterceptTCP(context.Background(), ns, r.id, name, dests, proxy.Config{Name: name, Seed: 1}, r.journal)
	if err != nil {
		r.t.Fatalf("InterceptTCP: %v", err)
	}
	r.t.Cleanup(p.Stop)
	return p
}

func TestInterceptHTTPWithLatency(t *testing.T) {
	r, a, b := interceptPair(t)
	ln, err := ListenTCP(b.NS, "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, ln, "b")
	url := fmt.Sprintf("http://%s:8080/", b.Addr)
	p := r.interceptTCP(a.NS, "web", fmt.Sprintf("%s:8080", b.Addr))
	if _, err := p.AddToxic(proxy.Toxic{Name: "slow", Stream: proxy.Downstream, Effect: proxy.Latency{Delay: 400 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	out, code := runIn(t, a.NS, 20*time.Second, "curl", "-sS", "--noproxy", "*", "--max-time", "10", "-w", " %{time_total}", url)
	i := strings.LastIndex(out, " ")
	body := out[:max(i, 0)]
	took, _ := strconv.ParseFloat(strings.TrimSpace(out[i+1:]), 64)
	if code != 0 || body != "hello from b" {
		t.Fatalf("curl through the intercept = %q (exit %d)", out, code)
	}
	if took < 0.4 {
		t.Errorf("curl took %.3fs through a 400 ms latency toxic, want at least 0.4 s", took)
	}
	if err := p.RemoveToxic("slow"); err != nil {
		t.Fatal(err)
	}
	// down: the proxy disabled refuses what is intercepted, and only
	// that; enabled again, it listens on the same port.
	ln2, err := ListenTCP(b.NS, "0.0.0.0:8081")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, ln2, "b2")
	if err := p.Update(p.Listen(), p.Upstream(), false); err != nil {
		t.Fatal(err)
	}
	if code := curlExit(t, a.NS, url); code != 7 {
		t.Errorf("curl %s with the intercept's proxy down: exit %d, want 7 (refused)", url, code)
	}
	if out, code := runIn(t, a.NS, 20*time.Second, "curl", "-sS", "--noproxy", "*", "--max-time", "10", fmt.Sprintf("http://%s:8081/", b.Addr)); code != 0 || out != "hello from b2" {
		t.Errorf("curl to a port not intercepted, proxy down = %q (exit %d)", out, code)
	}
	if err := p.Update(p.Listen(), p.Upstream(), true); err != nil {
		t.Fatal(err)
	}
	if code := curlExit(t, a.NS, url); code != 0 {
		t.Errorf("curl %s with the proxy enabled again: exit %d, want 0", url, code)
	}
}

func TestInterceptRedis(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs redis-server)", bin)
		}
	}
	r, a, b := interceptPair(t)
	srv := Command(self(t), b.NS, "redis-server", "--port", "6379", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no", "--protected-mode", "no")
	srv.Dir = t.TempDir()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	cli := func(args ...string) (string, int) {
		return runIn(t, a.NS, 10*time.Second, "redis-cli", append([]string{"-h", b.Addr.String(), "-p", "6379"}, args...)...)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, _ := cli("PING"); strings.TrimSpace(out) == "PONG" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server in b did not answer PING within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := r.interceptTCP(a.NS, "cache", fmt.Sprintf("%s:6379", b.Addr))
	if _, err := p.AddToxic(proxy.Toxic{Name: "slow", Stream: proxy.Upstream, Effect: proxy.Latency{Delay: 300 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, code := cli("SET", "k", "through-the-intercept"); code != 0 || strings.TrimSpace(out) != "OK" {
		t.Fatalf("redis-cli SET = %q (exit %d)", out, code)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("SET took %v through a 300 ms latency toxic, want at least 300 ms", took)
	}
	if out, code := cli("GET", "k"); code != 0 || strings.TrimSpace(out) != "through-the-intercept" {
		t.Errorf("redis-cli GET = %q (exit %d)", out, code)
	}
}

func TestInterceptDNS(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("getent is not installed")
	}
	r, a, _ := interceptPair(t)
	name := "db." + r.id + ".faultline.test"
	s, _, err := InterceptDNS(context.Background(), a.NS, r.id, "dns", dnsfault.Config{
		Records: map[string][]net.IP{name: {net.IPv4(198, 18, 99, 7)}},
	}, r.journal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	out, code := runIn(t, a.NS, 20*time.Second, "getent", "ahostsv4", name)
	if code != 0 || !strings.Contains(out, "198.18.99.7") {
		t.Fatalf("getent through the DNS intercept = %q (exit %d), want 198.18.99.7", out, code)
	}
	rule, err := dnsfault.ParseRule("db.*=SERVFAIL")
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules([]dnsfault.Rule{rule})
	if out, code := runIn(t, a.NS, 30*time.Second, "getent", "hosts", name); code == 0 {
		t.Errorf("getent hosts %s under SERVFAIL = %q (exit 0), want a failure", name, out)
	}
	if s.Faulted() == 0 {
		t.Errorf("the DNS server faulted no query")
	}
	host, err := HostNS()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := InterceptDNS(context.Background(), host, r.id, "dns2", dnsfault.Config{}, r.journal); err == nil {
		t.Errorf("InterceptDNS in the host's namespace: nil error, want ErrHostNamespace")
	}
}

// sinkSource serves, in ns, connections that read until the client half
// closes and then answer with the SHA-256 of what they read followed by n
// bytes of a seeded random stream.
func sinkSource(t *testing.T, ns NS, n int) *net.TCPListener {
	t.Helper()
	ln, err := ListenTCP(ns, "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				if _, err := c.Write(h.Sum(nil)); err != nil {
					return
				}
				_, _ = io.CopyN(c, randStream(7), int64(n))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

func randStream(seed uint64) io.Reader { return &rngReader{rand.NewChaCha8([32]byte{byte(seed)})} }

type rngReader struct{ r *rand.ChaCha8 }

func (r *rngReader) Read(b []byte) (int, error) { return r.r.Read(b) }

func TestInterceptByteIntegrityWhileToxicsChange(t *testing.T) {
	r, a, b := interceptPair(t)
	const size = 4 << 20
	ln := sinkSource(t, b.NS, size)
	port := ln.Addr().(*net.TCPAddr).Port
	p := r.interceptTCP(a.NS, "bytes", fmt.Sprintf(":%d", port))

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Add(1)
	go func() { // toxics come and go on both streams while bytes flow
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			s := proxy.Stream(i % 2)
			name := fmt.Sprintf("t%d", i%4)
			var e proxy.Effect = proxy.Latency{Delay: time.Millisecond}
			if i%3 == 0 {
				e = proxy.Slicer{AverageSize: 64, SizeVariation: 32}
			}
			if _, err := p.AddToxic(proxy.Toxic{Name: name, Stream: s, Effect: e}); err != nil {
				_ = p.RemoveToxic(name)
			}
		}
	}()
	defer func() { close(stop); churn.Wait() }()

	c, err := DialTCP(context.Background(), a.NS, 0, netip.AddrPortFrom(b.Addr, uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	up := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.MultiWriter(c, up), randStream(3), size)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	rd := bufio.NewReader(c)
	gotUp := make([]byte, sha256.Size)
	if _, err := io.ReadFull(rd, gotUp); err != nil {
		t.Fatalf("read the server's digest: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if want := up.Sum(nil); string(gotUp) != string(want) {
		t.Errorf("upstream: the server read SHA-256 %x, the client sent %x", gotUp, want)
	}
	down := sha256.New()
	if n, err := io.Copy(down, rd); err != nil || n != size {
		t.Fatalf("downstream: read %d bytes, %v; want %d", n, err, size)
	}
	wantDown := sha256.New()
	_, _ = io.CopyN(wantDown, randStream(7), size)
	if string(down.Sum(nil)) != string(wantDown.Sum(nil)) {
		t.Errorf("downstream: bytes differ from what the server sent")
	}
}

func TestInterceptThousandConnections(t *testing.T) {
	r, a, b := interceptPair(t)
	const n = 1000
	ln := sinkSource(t, b.NS, 1)
	port := ln.Addr().(*net.TCPAddr).Port
	p := r.interceptTCP(a.NS, "many", fmt.Sprintf("%s:%d", b.Addr, port))
	conns := make([]*net.TCPConn, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := DialTCP(ctx, a.NS, 0, netip.AddrPortFrom(b.Addr, uint16(port)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		t.Fatalf("dial: %v", firstErr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for p.NumConns() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy holds %d connections, want %d at once", p.NumConns(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every one of them still works end to end.
	for i, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			_, err := c.Write([]byte{byte(i)})
			if err == nil {
				err = c.CloseWrite()
			}
			if err == nil {
				var b [sha256.Size + 1]byte
				_, err = io.ReadFull(c, b[:])
				if err == nil && [sha256.Size]byte(b[:sha256.Size]) != sha256.Sum256([]byte{byte(i)}) {
					err = fmt.Errorf("connection %d: digest mismatch", i)
				}
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

// TestInterceptEndsWithItsConnectionsSeen: a connection held through an
// intercept is seen closed by its client when the proxy stops before the
// redirect and the run's tables go; in the other order its closing packets
// are no longer translated back (the namespace's nat chains are gone) and
// the client is left holding a connection that never ends.
func TestInterceptEndsWithItsConnectionsSeen(t *testing.T) {
	for _, proxyFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("proxy first %v", proxyFirst), func(t *testing.T) {
			r := newRun(t)
			_, insts := r.network(2)
			a, b := insts[0], insts[1]
			tables, err := Tables(context.Background(), a.NS, r.id, r.journal)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := ListenTCP(b.NS, "0.0.0.0:8080")
			if err != nil {
				t.Fatal(err)
			}
			serveHTTP(t, ln, "b")
			dests, err := ParseDests([]string{b.Addr.String() + ":8080"})
			if err != nil {
				t.Fatal(err)
			}
			p, redirect, err := InterceptTCP(context.Background(), a.NS, r.id, "held", dests, proxy.Config{Name: "held", Seed: 1}, r.journal)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			conn, err := DialTCP(context.Background(), a.NS, 0, netip.AddrPortFrom(b.Addr, 8080)) // unmarked: intercepted
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: b\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
				t.Fatalf("through the intercept: %q %v", line, err)
			}
			if proxyFirst {
				p.Stop()
			}
			for _, op := range []Op{redirect, tables} {
				if err := Undo(context.Background(), op); err != nil {
					t.Fatal(err)
				}
			}
			if !proxyFirst {
				p.Stop()
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = io.Copy(io.Discard, br)
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			if proxyFirst && timedOut {
				t.Errorf("proxy stopped first: the client never saw its connection end")
			}
			if !proxyFirst && !timedOut {
				t.Errorf("redirect removed first: the client saw its connection end (%v); the order no longer matters", err)
			}
		})
	}
}
