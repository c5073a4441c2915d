package runner

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/load"
)

// sample is one request's outcome, as kept for sliding windows.
type sample struct {
	at      time.Time // when it finished
	name    string
	latency time.Duration
	failed  bool
}

// collector receives the traffic's results and the probes' outcomes.
type collector struct {
	mu      sync.Mutex
	phase   string
	phases  map[string]*phaseStats
	order   []string // the phases, as they were entered
	samples []sample
	probes  []probeOutcome
	// trafficStart and rate tell how many requests were due by now, so
	// that those not finished yet can be shown.
	trafficStart time.Time
	rate         float64
}

// inFlight estimates the requests due by now that have not finished.
func (c *collector) inFlight(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.trafficStart.IsZero() {
		return 0
	}
	return max(0, int(now.Sub(c.trafficStart).Seconds()*c.rate)-len(c.samples))
}

type phaseStats struct {
	all    *load.Stats
	byName map[string]*load.Stats
	start  time.Time
	end    time.Time
}

type probeOutcome struct {
	at    time.Time
	check int // index in the experiment's steady_state
	ok    bool
	what  string
}

func newCollector() *collector {
	return &collector{phases: map[string]*phaseStats{}}
}

func (c *collector) setPhase(name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.phases[c.phase]; p != nil {
		p.end = now
	}
	c.phase = name
	if _, seen := c.phases[name]; !seen {
		c.order = append(c.order, name)
	}
	c.phases[name] = &phaseStats{all: load.NewStats(), byName: map[string]*load.Stats{}, start: now}
}

func (c *collector) add(r load.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := sample{at: r.Intended.Add(r.Latency), name: r.Request, latency: r.Latency, failed: r.Failed()}
	c.samples = append(c.samples, s)
	if p := c.phases[c.phase]; p != nil {
		p.all.Add(r)
		if r.Request != "" {
			st := p.byName[r.Request]
			if st == nil {
				st = load.NewStats()
				p.byName[r.Request] = st
			}
			st.Add(r)
		}
	}
}

func (c *collector) addProbe(o probeOutcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes = append(c.probes, o)
}

// phaseSummary summarizes a phase's traffic, for all requests or one.
func (c *collector) phaseSummary(phase, of string, now time.Time) (load.Summary, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.phases[phase]
	if p == nil {
		return load.Summary{}, false
	}
	end := p.end
	if end.IsZero() {
		end = now
	}
	st := p.all
	if of != "" {
		if st = p.byName[of]; st == nil {
			return load.Summary{}, false
		}
	}
	return st.Summary(end.Sub(p.start)), true
}

// traffic summarizes every phase that saw traffic, in phase order.
func (c *collector) traffic(now time.Time) []TrafficRecord {
	out := []TrafficRecord{}
	record := func(phase, of string, sum load.Summary) TrafficRecord {
		return TrafficRecord{Phase: phase, Request: of, Requests: sum.Count, Errors: sum.Errors, ErrorRate: sum.ErrorRate,
			Throughput: sum.Throughput, P50: sum.P50.Seconds(), P95: sum.P95.Seconds(), P99: sum.P99.Seconds(), Max: sum.Max.Seconds()}
	}
	c.mu.Lock()
	order := slices.Clone(c.order)
	c.mu.Unlock()
	for _, ph := range order {
		sum, ok := c.phaseSummary(ph, "", now)
		if !ok || sum.Count == 0 {
			continue
		}
		out = append(out, record(ph, "", sum))
		c.mu.Lock()
		names := slices.Sorted(maps.Keys(c.phases[ph].byName))
		c.mu.Unlock()
		for _, n := range names {
			if sum, ok := c.phaseSummary(ph, n, now); ok {
				out = append(out, record(ph, n, sum))
			}
		}
	}
	return out
}

// window summarizes the traffic that finished in [from, to).
func (c *collector) window(from, to time.Time, of string) load.Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := load.NewStats()
	for i := len(c.samples) - 1; i >= 0; i-- {
		s := c.samples[i]
		if s.at.Before(from) {
			break // samples come roughly in finishing order
		}
		if s.at.Before(to) && (of == "" || s.name == of) {
			code := 200
			if s.failed {
				code = 0
			}
			st.Add(load.Result{Latency: s.latency, Code: code})
		}
	}
	return st.Summary(to.Sub(from))
}

// probesHeld reports whether every run of a probe in [from, to) passed,
// how many ran and passed, and the last failure.
func (c *collector) probesHeld(check int, from, to time.Time) (held bool, ran, passed int, failure string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.probes {
		if o.check == check && !o.at.Before(from) && o.at.Before(to) {
			ran++
			if o.ok {
				passed++
			} else {
				failure = o.what
			}
		}
	}
	return ran > 0 && passed == ran, ran, passed, failure
}

// metricValue is a condition's metric in base units on a summary.
func metricValue(c experiment.Condition, s load.Summary) float64 {
	switch c.Metric {
	case "error_rate":
		return s.ErrorRate
	case "throughput":
		return s.Throughput
	}
	d, _ := s.Latency(c.Stat)
	return d.Seconds()
}

// unit is how a condition's value is shown in results.
func unit(c experiment.Condition) string {
	switch c.Metric {
	case "error_rate":
		return "ratio"
	case "throughput":
		return "/s"
	}
	return "s"
}
