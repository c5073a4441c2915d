package probe

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Result is what one run of a probe found.
type Result struct {
	// Passed says the probe met its expectation.
	Passed bool
	// Detail says what it saw: "status 200", "exit status 3: cannot
	// reach db", "value 0.4, want < 0.1".
	Detail string
}

// Func runs one kind of probe once. It returns an error when the probe
// could not be carried out at all (no answer, a command that does not
// exist), and a Result whose Passed is false when it ran and what it saw
// did not meet the spec.
type Func func(ctx context.Context, p *Prober, s *Spec) (Result, error)

// Cluster is what a ready_pods probe asks of a Kubernetes cluster: the
// share of a selection's pods that are Ready (package kube's Client).
type Cluster interface {
	ReadyShare(ctx context.Context, namespace, selector string) (share float64, ready, total int, err error)
}

// Config says how a Prober reaches what its probes need.
type Config struct {
	// HTTP is the client of http and prometheus probes; nil means one
	// without keep-alives (a probe measures a fresh connection).
	HTTP *http.Client
	// Cluster opens the cluster of a kubeconfig ("": the default one);
	// nil means ready_pods probes cannot run.
	Cluster func(kubeconfig string) (Cluster, error)
	// Timeout bounds each run; zero means 1 s.
	Timeout time.Duration
}

// Prober runs probes, holding the clients they share. The zero value is
// not usable: use New.
type Prober struct {
	cfg   Config
	kinds map[string]Func

	mu       sync.Mutex
	clusters map[string]Cluster
}

// New returns a Prober with the built-in kinds.
func New(cfg Config) *Prober {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	return &Prober{cfg: cfg, clusters: map[string]Cluster{}, kinds: map[string]Func{
		"http":       httpProbe,
		"tcp":        tcpProbe,
		"command":    commandProbe,
		"prometheus": prometheusProbe,
		"alert":      alertProbe,
		"ready_pods": readyPodsProbe,
	}}
}

// Register adds a kind of probe (probe: {KIND: ...} in a file), or
// replaces one.
func (p *Prober) Register(kind string, f Func) { p.kinds[kind] = f }

// Kinds lists the kinds the Prober runs, sorted.
func (p *Prober) Kinds() []string { return slices.Sorted(maps.Keys(p.kinds)) }

// Run runs a probe once, within the Prober's timeout.
func (p *Prober) Run(ctx context.Context, s *Spec) (Result, error) {
	f, ok := p.kinds[s.Kind]
	if !ok {
		return Result{}, fmt.Errorf("no kind of probe %q", s.Kind)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	return f(ctx, p, s)
}

// Close lets go of the Prober's idle connections.
func (p *Prober) Close() { p.cfg.HTTP.CloseIdleConnections() }

// cluster returns the client of a kubeconfig's cluster, opened once.
func (p *Prober) cluster(kubeconfig string) (Cluster, error) {
	if p.cfg.Cluster == nil {
		return nil, fmt.Errorf("this prober has no Kubernetes client")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clusters[kubeconfig]; ok {
		return c, nil
	}
	c, err := p.cfg.Cluster(kubeconfig)
	if err != nil {
		return nil, err
	}
	p.clusters[kubeconfig] = c
	return c, nil
}
