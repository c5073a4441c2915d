package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// ServerOptions configure a Server. The zero value is usable.
type ServerOptions struct {
	// Seed seeds every proxy's random draws; zero means from the clock.
	Seed int64
	// Token, if set, is the bearer token every API call must carry.
	Token string
	// Version is what GET /version reports; empty means "git".
	Version string
	// DialTimeout bounds each upstream dial; zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger, if not nil, is told of failed upstream dials.
	Logger *slog.Logger
	// ListenHost is the host a proxy listens on when its listen address
	// names none ("" or ":PORT"; "" also takes a free port). Empty means
	// all interfaces, as Toxiproxy does; an address that names a host,
	// 0.0.0.0 included, is kept as it is.
	ListenHost string
}

// Server holds named proxies and serves Toxiproxy's HTTP API for them
// (see Handler). Its methods are safe for concurrent use.
type Server struct {
	opts     ServerOptions
	registry *prometheus.Registry
	metrics  *Metrics

	mu      sync.Mutex
	proxies map[string]*Proxy
}

// NewServer returns a server with no proxies.
func NewServer(opts ServerOptions) *Server {
	if opts.Seed == 0 {
		opts.Seed = time.Now().UnixNano()
	}
	if opts.Version == "" {
		opts.Version = "git"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{opts: opts, registry: reg, metrics: NewMetrics(reg), proxies: map[string]*Proxy{}}
}

// Seed returns the seed the server's proxies draw from.
func (s *Server) Seed() int64 { return s.opts.Seed }

// ProxyConfig is a proxy as the API creates it.
type ProxyConfig struct {
	Name     string
	Listen   string
	Upstream string
	// Enabled false creates the proxy without listening.
	Enabled bool
}

// withHost gives a listen address that names no host the server's
// ListenHost.
func (s *Server) withHost(listen string) string {
	if s.opts.ListenHost == "" {
		return listen
	}
	host, port, err := net.SplitHostPort(listen)
	if listen == "" {
		host, port, err = "", "0", nil
	}
	if err != nil || host != "" {
		return listen
	}
	return net.JoinHostPort(s.opts.ListenHost, port)
}

func (s *Server) newProxy(c ProxyConfig) *Proxy {
	return New(Config{
		Name: c.Name, Listen: c.Listen, Upstream: c.Upstream,
		Seed: s.opts.Seed, DialTimeout: s.opts.DialTimeout, Metrics: s.metrics, Logger: s.opts.Logger,
	})
}

func (c ProxyConfig) check() error {
	switch {
	case c.Name == "":
		return invalidf("missing required field: name")
	case c.Upstream == "":
		return invalidf("missing required field: upstream")
	}
	return nil
}

// Create adds a proxy and starts it if enabled. A name in use gives
// ErrExists; a listen failure gives the OS error and creates nothing.
func (s *Server) Create(c ProxyConfig) (*Proxy, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	c.Listen = s.withHost(c.Listen)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.proxies[c.Name]; ok {
		return nil, fmt.Errorf("proxy %q: %w", c.Name, ErrExists)
	}
	p := s.newProxy(c)
	if c.Enabled {
		if err := p.Start(); err != nil {
			return nil, err
		}
	}
	s.proxies[c.Name] = p
	p.metrics.setToxics(0, 0)
	return p, nil
}

// Get returns the proxy of that name, or ErrNotFound.
func (s *Server) Get(name string) (*Proxy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[name]
	if !ok {
		return nil, fmt.Errorf("proxy %q: %w", name, ErrNotFound)
	}
	return p, nil
}

// List returns the proxies sorted by name.
func (s *Server) List() []*Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Proxy, 0, len(s.proxies))
	for _, p := range s.proxies {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Proxy) int { return strings.Compare(a.name, b.name) })
	return out
}

// Delete stops a proxy, closing its connections, and removes it.
func (s *Server) Delete(name string) error {
	s.mu.Lock()
	p, ok := s.proxies[name]
	delete(s.proxies, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("proxy %q: %w", name, ErrNotFound)
	}
	p.Stop()
	p.metrics.forget()
	return nil
}

// Populate creates or replaces proxies as Toxiproxy's /populate does: every
// entry is checked before any is acted on (a missing field creates
// nothing); an existing proxy with the same listen address and upstream is
// kept as it is, toxics included; one that differs is replaced. Entries
// are handled in order and the first failure stops the rest: the proxies
// done so far are returned with the error.
func (s *Server) Populate(cs []ProxyConfig) ([]*Proxy, error) {
	for i, c := range cs {
		if err := c.check(); err != nil {
			return nil, invalidf("%s at proxy %d", err, i+1)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []*Proxy
	for _, c := range cs {
		c.Listen = s.withHost(c.Listen)
		old, ok := s.proxies[c.Name]
		if ok && !old.differs(c) {
			done = append(done, old)
			continue
		}
		if ok {
			old.Stop()
		}
		p := s.newProxy(c)
		if c.Enabled {
			if err := p.Start(); err != nil {
				return done, err
			}
		}
		s.proxies[c.Name] = p
		p.metrics.setToxics(0, 0)
		done = append(done, p)
	}
	return done, nil
}

// Changes reports whether Populate(cs) would create or replace a proxy, or
// Update with c's addresses would move one: whether it changes the set-up,
// as opposed to keeping every proxy as it is.
func (s *Server) Changes(cs ...ProxyConfig) bool {
	for _, c := range cs {
		c.Listen = s.withHost(c.Listen)
		p, err := s.Get(c.Name)
		if err != nil || p.differs(c) {
			return true
		}
	}
	return false
}

// differs reports whether c names other addresses than p has.
func (p *Proxy) differs(c ProxyConfig) bool {
	listen := c.Listen
	if addr, err := net.ResolveTCPAddr("tcp", c.Listen); err == nil {
		listen = addr.String()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return listen != p.listen || c.Upstream != p.upstream
}

// Reset removes every toxic and enables every proxy. A proxy that cannot
// listen again (its port taken) does not stop the others: every proxy is
// reset, then the failures are returned, one "proxy NAME: ERROR" each.
func (s *Server) Reset() error {
	var failed []string
	for _, p := range s.List() {
		p.RemoveAllToxics()
		if err := p.Start(); err != nil {
			failed = append(failed, fmt.Sprintf("proxy %s: %v", p.Name(), err))
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// Close stops every proxy and removes them all.
func (s *Server) Close() {
	s.mu.Lock()
	ps := s.proxies
	s.proxies = map[string]*Proxy{}
	s.mu.Unlock()
	for _, p := range ps {
		p.Stop()
	}
}
