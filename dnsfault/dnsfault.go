// Package dnsfault is a DNS resolver that fails on purpose: for names that
// match a rule it answers NXDOMAIN, SERVFAIL or REFUSED, gives no answer at
// all (the client times out), answers a wrong address, or answers late;
// every other name it answers from its own records or forwards to an
// upstream resolver. Its rules change while it runs (SetRules), which is
// how an experiment injects and reverts a DNS fault.
package dnsfault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Action is what a rule does to a matching query.
type Action struct {
	// Kind is NXDOMAIN, SERVFAIL, REFUSED, TIMEOUT (no answer), DELAY
	// (answer as usual, Delay late) or ADDRESS (answer Addr).
	Kind  string
	Delay time.Duration
	Addr  net.IP
}

// Rule applies an Action to the names its Pattern matches: a glob over
// the name without its final dot, case-insensitive ("payments.*",
// "*.shop.test", "db.internal").
type Rule struct {
	Pattern string
	Action  Action
}

func (r Rule) String() string {
	switch r.Action.Kind {
	case "DELAY":
		return fmt.Sprintf("%s=DELAY(%s)", r.Pattern, r.Action.Delay)
	case "ADDRESS":
		return fmt.Sprintf("%s=ADDRESS(%s)", r.Pattern, r.Action.Addr)
	}
	return r.Pattern + "=" + r.Action.Kind
}

// Kinds are the actions a rule may name.
var Kinds = []string{"NXDOMAIN", "SERVFAIL", "REFUSED", "TIMEOUT", "DELAY(duration)", "ADDRESS(ip)"}

// ParseRule reads PATTERN=ACTION, e.g. "payments.*=SERVFAIL",
// "*.slow.test=DELAY(2s)", "api.test=ADDRESS(192.0.2.1)".
func ParseRule(s string) (Rule, error) {
	pat, act, ok := strings.Cut(s, "=")
	pat, act = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(pat), ".")), strings.TrimSpace(act)
	if !ok || pat == "" || act == "" {
		return Rule{}, fmt.Errorf("rule %q: want PATTERN=ACTION, e.g. payments.*=SERVFAIL", s)
	}
	if _, err := path.Match(pat, "x"); err != nil {
		return Rule{}, fmt.Errorf("rule %q: pattern: %v", s, err)
	}
	r := Rule{Pattern: pat}
	kind, arg, hasArg := strings.Cut(act, "(")
	r.Action.Kind = strings.ToUpper(strings.TrimSpace(kind))
	if hasArg {
		if !strings.HasSuffix(arg, ")") {
			return Rule{}, fmt.Errorf("rule %q: %s( without )", s, kind)
		}
		arg = strings.TrimSpace(strings.TrimSuffix(arg, ")"))
	}
	switch r.Action.Kind {
	case "NXDOMAIN", "SERVFAIL", "REFUSED", "TIMEOUT":
		if hasArg {
			return Rule{}, fmt.Errorf("rule %q: %s takes no argument", s, r.Action.Kind)
		}
	case "DELAY":
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return Rule{}, fmt.Errorf("rule %q: DELAY needs a duration, e.g. DELAY(2s)", s)
		}
		r.Action.Delay = d
	case "ADDRESS":
		ip := net.ParseIP(arg)
		if ip == nil {
			return Rule{}, fmt.Errorf("rule %q: ADDRESS needs an IP address, e.g. ADDRESS(192.0.2.1)", s)
		}
		r.Action.Addr = ip
	default:
		return Rule{}, fmt.Errorf("rule %q: unknown action %q; known: %s", s, kind, strings.Join(Kinds, ", "))
	}
	return r, nil
}

// ParseRules reads several rules.
func ParseRules(rules []string) ([]Rule, error) {
	var out []Rule
	var errs []error
	for _, s := range rules {
		r, err := ParseRule(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// Config configures a Server.
type Config struct {
	Listen   string // HOST:PORT for UDP and TCP; port 0 picks a free one
	Upstream string // HOST:PORT of the resolver to forward to; empty: none
	// Records answer A and AAAA queries for these names (no final dot)
	// without asking upstream.
	Records map[string][]net.IP
	Rules   []Rule
	// Timeout bounds a forwarded query (default 2 s).
	Timeout time.Duration
	// PacketConn and Listener, if both are set, are served instead of
	// listening on Listen (an intercept opens them inside a network
	// namespace); Stop closes them. Forwarded queries still leave from
	// this process's own sockets.
	PacketConn net.PacketConn
	Listener   net.Listener
	// Mark, if not zero, marks the sockets of forwarded queries (SO_MARK,
	// which takes CAP_NET_ADMIN): an intercept in the server's own
	// namespace lets them pass instead of sending them back to it.
	Mark uint32
}

// Server is the resolver.
type Server struct {
	cfg     Config
	rules   atomic.Pointer[[]Rule]
	udp     *dns.Server
	tcp     *dns.Server
	addr    string
	client  *dns.Client
	wg      sync.WaitGroup
	done    chan struct{}
	faulted atomic.Int64
	queries atomic.Int64
	panics  atomic.Int64
}

// New returns a resolver; Start serves it.
func New(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	s := &Server{cfg: cfg, client: &dns.Client{Timeout: cfg.Timeout, Dialer: markedDialer(cfg.Mark)}, done: make(chan struct{})}
	s.SetRules(cfg.Rules)
	return s
}

// SetRules replaces the rules; queries that arrive next see them.
func (s *Server) SetRules(rules []Rule) {
	r := append([]Rule(nil), rules...)
	s.rules.Store(&r)
}

// Rules returns the rules in force.
func (s *Server) Rules() []Rule { return append([]Rule(nil), *s.rules.Load()...) }

// Addr is where the resolver listens, UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Queries counts the queries received; Faulted those a rule acted on.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Faulted counts the queries a rule acted on.
func (s *Server) Faulted() int64 { return s.faulted.Load() }

// Start listens on UDP and TCP (the same port) and serves.
func (s *Server) Start() error {
	pc, ln, err := s.cfg.PacketConn, s.cfg.Listener, error(nil)
	if pc == nil || ln == nil {
		if pc, ln, err = listenBoth(s.cfg.Listen); err != nil {
			return err
		}
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
		select {
		case <-started:
		case err := <-failed: // before it started: stop what did
			s.Stop()
			_, _ = pc.Close(), ln.Close()
			return fmt.Errorf("dns: serve on %s: %w", s.addr, err)
		}
	}
	return nil
}

// Stop stops serving; queries held by TIMEOUT or DELAY rules are dropped.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.udp.ShutdownContext(ctx)
	_ = s.tcp.ShutdownContext(ctx)
	s.wg.Wait()
}

// listenBoth listens on UDP and TCP on the same port. With port 0, the
// port the kernel picks for UDP may be taken for TCP: then it tries another.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			return nil, nil, err
		}
	}
}

func (s *Server) match(name string) (Rule, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, r := range *s.rules.Load() {
		if ok, _ := path.Match(r.Pattern, name); ok {
			return r, true
		}
	}
	return Rule{}, false
}

func (s *Server) serve(w dns.ResponseWriter, q *dns.Msg) {
	s.queries.Add(1)
	// A bug answering one query fails that query, never the server (nor
	// the run that embeds it, with its faults in place).
	defer func() {
		if p := recover(); p != nil {
			s.panics.Add(1)
			reply(w, q, dns.RcodeServerFailure)
		}
	}()
	if len(q.Question) != 1 {
		reply(w, q, dns.RcodeFormatError)
		return
	}
	question := q.Question[0]
	if r, ok := s.match(question.Name); ok {
		s.faulted.Add(1)
		switch r.Action.Kind {
		case "NXDOMAIN":
			reply(w, q, dns.RcodeNameError)
			return
		case "SERVFAIL":
			reply(w, q, dns.RcodeServerFailure)
			return
		case "REFUSED":
			reply(w, q, dns.RcodeRefused)
			return
		case "TIMEOUT":
			return // no answer at all: the client times out
		case "ADDRESS":
			m := new(dns.Msg)
			m.SetReply(q)
			m.Authoritative = true
			if rr := addressRR(question, r.Action.Addr); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
			_ = w.WriteMsg(m)
			return
		case "DELAY":
			select {
			case <-time.After(r.Action.Delay):
			case <-s.done:
				return
			}
		}
	}
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	if ips, ok := s.cfg.Records[name]; ok {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		for _, ip := range ips {
			if rr := addressRR(question, ip); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
		return
	}
	if s.cfg.Upstream == "" {
		reply(w, q, dns.RcodeNameError)
		return
	}
	in, _, err := s.client.Exchange(q, s.cfg.Upstream)
	if err == nil && in.Truncated {
		tcp := &dns.Client{Net: "tcp", Timeout: s.cfg.Timeout, Dialer: markedDialer(s.cfg.Mark)}
		in, _, err = tcp.Exchange(q, s.cfg.Upstream)
	}
	if err != nil {
		reply(w, q, dns.RcodeServerFailure)
		return
	}
	in.Id = q.Id
	_ = w.WriteMsg(in)
}

// addressRR answers an A or AAAA question with ip, or nil when the
// address is of the other family.
func addressRR(q dns.Question, ip net.IP) dns.RR {
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 1}
	switch {
	case q.Qtype == dns.TypeA && ip.To4() != nil:
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: ip.To4()}
	case q.Qtype == dns.TypeAAAA && ip.To4() == nil:
		hdr.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: hdr, AAAA: ip}
	}
	return nil
}

func reply(w dns.ResponseWriter, q *dns.Msg, rcode int) {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	_ = w.WriteMsg(m)
}

// markedDialer dials with SO_MARK mark set; nil (the default) for 0.
func markedDialer(mark uint32) *net.Dialer {
	if mark == 0 {
		return nil
	}
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		return serr
	}}
}
