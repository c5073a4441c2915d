package proxy

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus metrics of a set of proxies. The byte counters
// keep Toxiproxy's names and labels, so its dashboards keep working.
type Metrics struct {
	received, sent *prometheus.CounterVec
	conns          *prometheus.GaugeVec
	connsTotal     *prometheus.CounterVec
	dialFailures   *prometheus.CounterVec
	toxics         *prometheus.GaugeVec
	panics         *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	byteLabels := []string{"direction", "proxy", "listener", "upstream"}
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toxiproxy_proxy_received_bytes_total",
			Help: "Bytes read from a connection's source, by direction.",
		}, byteLabels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toxiproxy_proxy_sent_bytes_total",
			Help: "Bytes written to a connection's destination, by direction.",
		}, byteLabels),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_proxy_connections",
			Help: "Live proxied connections.",
		}, []string{"proxy"}),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_proxy_connections_total",
			Help: "Proxied connections opened (upstream dial succeeded).",
		}, []string{"proxy"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_proxy_upstream_dial_failures_total",
			Help: "Accepted connections closed because the upstream dial failed.",
		}, []string{"proxy"}),
		toxics: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_proxy_toxics",
			Help: "Toxics configured, by stream.",
		}, []string{"proxy", "stream"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_proxy_panics_total",
			Help: "Panics recovered in a connection's goroutines, each of which closed that connection (a bug: the log has its stack).",
		}, []string{"proxy"}),
	}
	reg.MustRegister(m.received, m.sent, m.conns, m.connsTotal, m.dialFailures, m.toxics, m.panics)
	return m
}

// proxyMetrics is one proxy's view of Metrics; a nil one counts nothing.
type proxyMetrics struct {
	m *Metrics
	p *Proxy
}

func (m *Metrics) forProxy(p *Proxy) *proxyMetrics {
	if m == nil {
		return nil
	}
	return &proxyMetrics{m: m, p: p}
}

// forget removes the proxy's series, when it is deleted.
func (pm *proxyMetrics) forget() {
	if pm == nil {
		return
	}
	l := prometheus.Labels{"proxy": pm.p.name}
	pm.m.received.DeletePartialMatch(l)
	pm.m.sent.DeletePartialMatch(l)
	pm.m.conns.DeletePartialMatch(l)
	pm.m.connsTotal.DeletePartialMatch(l)
	pm.m.dialFailures.DeletePartialMatch(l)
	pm.m.toxics.DeletePartialMatch(l)
	pm.m.panics.DeletePartialMatch(l)
}

// counter adds to a Prometheus counter; the zero value counts nothing.
type counter struct{ c prometheus.Counter }

func (c counter) Add(n int64) {
	if c.c != nil && n > 0 {
		c.c.Add(float64(n))
	}
}

// counters returns the received and sent counters of a new connection's
// stream; the caller holds no lock.
func (pm *proxyMetrics) counters(s Stream) (received, sent counter) {
	if pm == nil {
		return counter{}, counter{}
	}
	// The connection is being set up in handle, before register: the
	// addresses are read without p.mu held by the caller.
	pm.p.mu.Lock()
	lv := []string{s.String(), pm.p.name, pm.p.listen, pm.p.upstream}
	pm.p.mu.Unlock()
	return counter{pm.m.received.WithLabelValues(lv...)}, counter{pm.m.sent.WithLabelValues(lv...)}
}

func (pm *proxyMetrics) connOpened() {
	if pm != nil {
		pm.m.conns.WithLabelValues(pm.p.name).Inc()
		pm.m.connsTotal.WithLabelValues(pm.p.name).Inc()
	}
}

func (pm *proxyMetrics) connClosed() {
	if pm != nil {
		pm.m.conns.WithLabelValues(pm.p.name).Dec()
	}
}

func (pm *proxyMetrics) dialFailed() {
	if pm != nil {
		pm.m.dialFailures.WithLabelValues(pm.p.name).Inc()
	}
}

func (pm *proxyMetrics) setToxics(up, down int) {
	if pm != nil {
		pm.m.toxics.WithLabelValues(pm.p.name, Upstream.String()).Set(float64(up))
		pm.m.toxics.WithLabelValues(pm.p.name, Downstream.String()).Set(float64(down))
	}
}

func (pm *proxyMetrics) panicked() {
	if pm != nil {
		pm.m.panics.WithLabelValues(pm.p.name).Inc()
	}
}
