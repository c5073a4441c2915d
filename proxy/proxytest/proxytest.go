// Package proxytest starts fault-injection proxies for tests, as httptest
// starts HTTP servers.
package proxytest

import (
	"testing"

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
