package dnsfault_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/faultline/faultline/dnsfault"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg dnsfault.Config) *dnsfault.Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	s := dnsfault.New(cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// resolver is Go's own DNS client, pointed at addr.
func resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func query(t *testing.T, addr, name string, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: timeout}
	in, _, err := c.Exchange(m, addr)
	return in, err
}

// An upstream resolver with one record, and the faulty one in front of it.
func pair(t *testing.T, rules ...string) (*dnsfault.Server, *dnsfault.Server) {
	up := start(t, dnsfault.Config{Records: map[string][]net.IP{"api.upstream.test": {net.ParseIP("192.0.2.10")}}})
	rs, err := dnsfault.ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	front := start(t, dnsfault.Config{Upstream: up.Addr(), Rules: rs,
		Records: map[string][]net.IP{"payments.shop.test": {net.ParseIP("127.0.0.1")}}})
	return up, front
}

func TestAnswersAndForwards(t *testing.T) {
	_, s := pair(t)
	r := resolver(s.Addr())
	ctx := t.Context()
	if ips, err := r.LookupHost(ctx, "payments.shop.test"); err != nil || len(ips) != 1 || ips[0] != "127.0.0.1" {
		t.Errorf("own record: %v, %v", ips, err)
	}
	if ips, err := r.LookupHost(ctx, "api.upstream.test"); err != nil || len(ips) != 1 || ips[0] != "192.0.2.10" {
		t.Errorf("forwarded: %v, %v", ips, err)
	}
	var dnsErr *net.DNSError
	if _, err := r.LookupHost(ctx, "nowhere.test"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("unknown name: %v, want not found", err)
	}
	// Over TCP too.
	m := new(dns.Msg)
	m.SetQuestion("payments.shop.test.", dns.TypeA)
	in, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, s.Addr())
	if err != nil || len(in.Answer) != 1 {
		t.Errorf("TCP: %v, %v", in, err)
	}
}

func TestRules(t *testing.T) {
	_, s := pair(t,
		"payments.*=SERVFAIL", "*.gone.test=NXDOMAIN", "api.upstream.test=ADDRESS(192.0.2.99)",
		"slow.shop.test=DELAY(300ms)", "dead.shop.test=TIMEOUT", "no.shop.test=REFUSED")
	ctx := t.Context()
	r := resolver(s.Addr())
	var dnsErr *net.DNSError
	if _, err := r.LookupHost(ctx, "payments.shop.test"); !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Errorf("SERVFAIL rule: %v, want a failure that is not 'not found'", err)
	}
	if in, err := query(t, s.Addr(), "payments.shop.test", time.Second); err != nil || in.Rcode != dns.RcodeServerFailure {
		t.Errorf("SERVFAIL rcode: %v %v", in, err)
	}
	if _, err := r.LookupHost(ctx, "x.gone.test"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("NXDOMAIN rule: %v", err)
	}
	if ips, err := r.LookupHost(ctx, "api.upstream.test"); err != nil || len(ips) != 1 || ips[0] != "192.0.2.99" {
		t.Errorf("ADDRESS rule: %v, %v", ips, err)
	}
	if in, err := query(t, s.Addr(), "no.shop.test", time.Second); err != nil || in.Rcode != dns.RcodeRefused {
		t.Errorf("REFUSED: %v %v", in, err)
	}
	start := time.Now()
	if in, err := query(t, s.Addr(), "slow.shop.test", 2*time.Second); err != nil || in.Rcode != dns.RcodeNameError || time.Since(start) < 300*time.Millisecond {
		t.Errorf("DELAY: %v %v after %v", in, err, time.Since(start))
	}
	if _, err := query(t, s.Addr(), "dead.shop.test", 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("TIMEOUT rule: %v, want the client to time out", err)
	}
	// Each faulted query counts once (Go's resolver above asks for A and
	// AAAA, and retries, so count from here).
	n, q := s.Faulted(), s.Queries()
	_, _ = query(t, s.Addr(), "payments.shop.test", time.Second)
	_, _ = query(t, s.Addr(), "ok.upstream.test", time.Second)
	if s.Faulted() != n+1 || s.Queries() != q+2 {
		t.Errorf("Faulted %d -> %d, Queries %d -> %d; want +1 and +2", n, s.Faulted(), q, s.Queries())
	}
}

// Rules change live: what an experiment's inject and revert do.
func TestSetRulesLive(t *testing.T) {
	_, s := pair(t)
	r := resolver(s.Addr())
	ctx := t.Context()
	rule, _ := dnsfault.ParseRule("payments.shop.test=NXDOMAIN")
	s.SetRules([]dnsfault.Rule{rule})
	if _, err := r.LookupHost(ctx, "payments.shop.test"); err == nil {
		t.Fatal("rule not in force")
	}
	s.SetRules(nil)
	if _, err := r.LookupHost(ctx, "payments.shop.test"); err != nil {
		t.Fatalf("after the revert: %v", err)
	}
}

func TestParseRule(t *testing.T) {
	for in, want := range map[string]string{
		"payments.*=SERVFAIL": "payments.*=SERVFAIL", "A.Test.=nxdomain": "a.test=NXDOMAIN",
		"x=DELAY(1.5s)": "x=DELAY(1.5s)", "x=ADDRESS(2001:db8::1)": "x=ADDRESS(2001:db8::1)", " y = TIMEOUT ": "y=TIMEOUT",
	} {
		r, err := dnsfault.ParseRule(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRule(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, in := range []string{"", "x", "=SERVFAIL", "x=", "x=BOOM", "x=DELAY(soon)", "x=ADDRESS(nope)", "x=SERVFAIL(1)", "[=SERVFAIL", "x=DELAY(1s"} {
		if _, err := dnsfault.ParseRule(in); err == nil {
			t.Errorf("ParseRule(%q) accepted", in)
		}
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"payments.*=SERVFAIL", "x=DELAY(2s)", "x=ADDRESS(1.2.3.4)", "=", "a=b(c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := dnsfault.ParseRule(s)
		if err != nil {
			return
		}
		again, err := dnsfault.ParseRule(r.String())
		if err != nil || again.String() != r.String() {
			t.Fatalf("%q -> %q does not parse back the same: %v", s, r.String(), err)
		}
	})
}
