// Package proxytest starts fault-injection proxies for tests, as httptest
// starts HTTP servers.
package proxytest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/faultline/faultline/proxy"
)

// New starts a proxy on a free loopback port in front of upstream and stops
// it when the test ends. Connect to its Listen() address.
func New(tb testing.TB, upstream string) *proxy.Proxy {
	tb.Helper()
	p := proxy.New(proxy.Config{Name: tb.Name(), Listen: "127.0.0.1:0", Upstream: upstream, Seed: 1})
	if err := p.Start(); err != nil {
		tb.Fatalf("proxytest: start proxy in front of %s: %v", upstream, err)
	}
	tb.Cleanup(p.Stop)
	return p
}

// AddToxic adds a toxic and fails the test if it cannot.
func AddToxic(tb testing.TB, p *proxy.Proxy, t proxy.Toxic) proxy.Toxic {
	tb.Helper()
	t, err := p.AddToxic(t)
	if err != nil {
		tb.Fatalf("proxytest: add toxic to %s: %v", p.Name(), err)
	}
	return t
}

// Toxiproxy starts the real Toxiproxy server named by $TOXIPROXY_SERVER on a
// free loopback port, for tests that compare faultline with it, and returns
// its API URL; it is killed when the test ends. Without the variable the
// test is skipped, except under CI=true, where it fails: make test builds
// Toxiproxy 2.12.0 and sets the variable.
func Toxiproxy(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("TOXIPROXY_SERVER")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("proxytest: TOXIPROXY_SERVER is not set: run the tests through make test")
		}
		tb.Skip("proxytest: TOXIPROXY_SERVER not set (make test builds Toxiproxy 2.12.0 and sets it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-host", host, "-port", port)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=fatal")
	if err := cmd.Start(); err != nil {
		tb.Fatalf("proxytest: start Toxiproxy: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := client.Get(url + "/version")
		if err == nil {
			resp.Body.Close()
			return url
		}
		if time.Now().After(deadline) {
			tb.Fatalf("proxytest: Toxiproxy did not answer on %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NewServer starts a proxy server's HTTP API on a free loopback port, as
// httptest.NewServer does, and returns the server and the API's URL. The
// API and every proxy stop when the test ends.
func NewServer(tb testing.TB, opts proxy.ServerOptions) (*proxy.Server, string) {
	tb.Helper()
	s := proxy.NewServer(opts)
	hs := httptest.NewServer(s.Handler())
	tb.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs.URL
}
