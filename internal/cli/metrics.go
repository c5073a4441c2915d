package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/runner"
)

// runMetrics are the Prometheus metrics of one run, set from each tick's
// sample: what 'faultline run --metrics-listen' serves, so that a team's
// own dashboards show the fault windows beside their graphs.
type runMetrics struct {
	reg                *prometheus.Registry
	phase, fault       *prometheus.GaugeVec
	requests, errs     prometheus.Counter
	latency            *prometheus.GaugeVec
	inFlight, oldest   prometheus.Gauge
	probeOK, probeTook *prometheus.GaugeVec
	phases             []string
	faults             []experiment.Fault
}

var runPhases = []string{"setup", "baseline", "inject", "rollback", "recovery", "teardown"}

func newRunMetrics(x *experiment.Experiment, out string) *runMetrics {
	m := &runMetrics{reg: prometheus.NewRegistry(), phases: runPhases, faults: x.Faults}
	labels := prometheus.Labels{"experiment": x.Name, "run_dir": out}
	gauge := func(name, help string, vars ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, vars)
		m.reg.MustRegister(g)
		return g
	}
	m.phase = gauge("faultline_run_phase", "1 for the phase the run is in, 0 for the others.", "phase")
	m.fault = gauge("faultline_fault_active", "1 while the fault is in place, else 0.", "fault", "action", "target")
	m.latency = gauge("faultline_traffic_latency_seconds", "The traffic's latency in the last tick, from each request's intended start.", "quantile")
	m.probeOK = gauge("faultline_probe_success_ratio", "The share of the probe's runs that passed in the last tick.", "probe")
	m.probeTook = gauge("faultline_probe_latency_seconds", "The probe's mean time to answer in the last tick.", "probe")
	m.requests = prometheus.NewCounter(prometheus.CounterOpts{Name: "faultline_traffic_requests_total", Help: "Requests of the run's traffic that finished.", ConstLabels: labels})
	m.errs = prometheus.NewCounter(prometheus.CounterOpts{Name: "faultline_traffic_errors_total", Help: "Requests of the run's traffic that failed.", ConstLabels: labels})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "faultline_traffic_in_flight", Help: "Requests due and not finished.", ConstLabels: labels})
	m.oldest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "faultline_traffic_oldest_in_flight_seconds", Help: "Age of the oldest request in flight.", ConstLabels: labels})
	m.reg.MustRegister(m.requests, m.errs, m.inFlight, m.oldest)
	m.setPhase("setup")
	for _, f := range x.Faults {
		m.fault.WithLabelValues(f.Name, f.Action.Kind(), orMachine(f.Target)).Set(0)
	}
	return m
}

func (m *runMetrics) setPhase(phase string) {
	for _, p := range m.phases {
		v := 0.0
		if p == phase {
			v = 1
		}
		m.phase.WithLabelValues(p).Set(v)
	}
}

// sample sets the metrics from a tick's sample.
func (m *runMetrics) sample(s runner.Sample) {
	m.setPhase(s.Phase)
	for _, f := range m.faults {
		v := 0.0
		if slices.Contains(s.ActiveFaults, f.Name) {
			v = 1
		}
		m.fault.WithLabelValues(f.Name, f.Action.Kind(), orMachine(f.Target)).Set(v)
	}
	m.requests.Add(float64(s.Requests))
	m.errs.Add(float64(s.Errors))
	for q, v := range map[string]float64{"0.5": s.P50, "0.95": s.P95, "0.99": s.P99, "1": s.Max} {
		m.latency.WithLabelValues(q).Set(v)
	}
	m.inFlight.Set(float64(s.InFlight))
	m.oldest.Set(s.Oldest)
	type acc struct {
		n, passed int
		took      float64
	}
	probes := map[string]*acc{}
	for _, p := range s.Probes {
		a := probes[p.Probe]
		if a == nil {
			a = &acc{}
			probes[p.Probe] = a
		}
		a.n++
		a.took += p.Latency
		if p.Passed {
			a.passed++
		}
	}
	for name, a := range probes {
		m.probeOK.WithLabelValues(name).Set(float64(a.passed) / float64(a.n))
		m.probeTook.WithLabelValues(name).Set(a.took / float64(a.n))
	}
}

// serveMetrics serves m on addr (/metrics) until the returned stop is
// called.
func serveMetrics(addr string, m *runMetrics, progress io.Writer) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usagef("--metrics-listen %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(progress, "metrics: %v\n", err)
		}
	}()
	fmt.Fprintf(progress, "metrics of the run on http://%s/metrics\n", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// loopbackAddr reports whether a listen address stays on this machine.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
