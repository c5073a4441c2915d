package shop

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// BalancerConfig configures the balancer in front of the checkout
// instances.
type BalancerConfig struct {
	Listen   string
	Backends []string // HOST:PORT of each instance
	Build    Build
	// HealthInterval is how often the resilient build checks each
	// instance's /health (default 250 ms).
	HealthInterval time.Duration
	Logger         *slog.Logger
}

// Balancer spreads requests over the instances. Fragile: round robin over
// all of them, one attempt, no timeouts. Resilient: round robin over the
// instances whose /health answers 200 (all of them when none does), and a
// request that fails is tried on another instance when it is safe: the
// connection was refused (nothing was sent), or the method is idempotent.
type Balancer struct {
	cfg       BalancerConfig
	log       *slog.Logger
	backends  []*backend
	next      atomic.Uint64
	transport *http.Transport
}

type backend struct {
	addr    string
	healthy atomic.Bool
}

// NewBalancer prepares a balancer; Run serves it.
func NewBalancer(cfg BalancerConfig) (*Balancer, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("balancer: no backends")
	}
	if _, err := ParseBuild(string(cfg.Build)); err != nil {
		return nil, err
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Balancer{cfg: cfg, log: cfg.Logger}
	for _, a := range cfg.Backends {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, err
		}
		be := &backend{addr: a}
		be.healthy.Store(true)
		b.backends = append(b.backends, be)
	}
	b.transport = &http.Transport{MaxIdleConnsPerHost: 64}
	if cfg.Build == Resilient {
		b.transport.DialContext = (&net.Dialer{Timeout: 250 * time.Millisecond}).DialContext
		b.transport.ResponseHeaderTimeout = 4 * time.Second
	}
	return b, nil
}

// candidates returns the instances to try, in round-robin order.
func (b *Balancer) candidates() []*backend {
	pool := b.backends // story(half-instances, zone-outage): every instance, dead or alive
	if b.cfg.Build == Resilient {
		var up []*backend
		for _, be := range b.backends {
			if be.healthy.Load() {
				up = append(up, be)
			}
		}
		if len(up) > 0 {
			pool = up // story(half-instances, zone-outage): only the instances whose /health answers 200
		}
	}
	start := int(b.next.Add(1)-1) % len(pool)
	out := make([]*backend, 0, len(pool))
	for i := range pool {
		out = append(out, pool[(start+i)%len(pool)])
	}
	if b.cfg.Build == Fragile {
		out = out[:1] // story(half-instances, zone-outage): one attempt
	}
	return out
}

// hopHeaders are not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// ServeHTTP forwards one request.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	idempotent := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
	var lastErr error
	for _, be := range b.candidates() {
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "http", be.addr, "", ""
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		for _, h := range hopHeaders {
			out.Header.Del(h)
		}
		resp, err := b.transport.RoundTrip(out)
		if err != nil {
			lastErr = err
			refused := isDialError(err)
			if refused && be.healthy.Swap(false) {
				b.log.Warn("instance down", "instance", be.addr, "err", err)
			}
			if refused || idempotent { // story(half-instances, zone-outage): tried on another instance when that is safe
				continue
			}
			break
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.Header().Set("X-Shop-Instance", be.addr)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	writeError(w, http.StatusBadGateway, "no instance answered: %v", lastErr)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// checkHealth marks each instance healthy when its /health answers 200
// within a short timeout.
func (b *Balancer) checkHealth(ctx context.Context) {
	client := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, be := range b.backends {
		ok := false
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+be.addr+"/health", nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = resp.StatusCode == http.StatusOK
		}
		if was := be.healthy.Swap(ok); was != ok && ctx.Err() == nil {
			b.log.Info("instance health changed", "instance", be.addr, "healthy", ok)
		}
	}
}

// Run serves until ctx ends; the resilient build checks health meanwhile.
func (b *Balancer) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	hctx, stopHealth := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if b.cfg.Build == Resilient {
		wg.Go(func() {
			t := time.NewTicker(b.cfg.HealthInterval)
			defer t.Stop()
			for {
				b.checkHealth(hctx)
				select {
				case <-hctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	b.log.Info("balancer serving", "listen", ln.Addr().String(), "build", b.cfg.Build, "instances", len(b.backends))
	err = Serve(ctx, srv, ln)
	stopHealth() // also when Serve failed
	wg.Wait()
	b.transport.CloseIdleConnections()
	return err
}
