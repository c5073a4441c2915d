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
	stops   []stopOutcome
	// flight tells which requests are due and not finished; snaps are its
	// look at each tick, so that a window counts a hang by its age.
	flight *load.Flight
	snaps  []flightSnap
}

// flightSnap is the requests in flight at one time, by name, with their
// ages then.
type flightSnap struct {
	at   time.Time
	ages map[string][]time.Duration
}

// look records what is in flight now (a tick), and returns how many
// requests and the oldest one's age.
func (c *collector) look(now time.Time) (int, time.Duration) {
	if c.flight == nil {
		return 0, 0
	}
	pending := c.flight.Pending(now)
	snap := flightSnap{at: now, ages: map[string][]time.Duration{}}
	var oldest time.Duration
	for _, p := range pending {
		age := now.Sub(p.Intended)
		snap.ages[p.Request] = append(snap.ages[p.Request], age)
		oldest = max(oldest, age)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snaps = append(c.snaps, snap)
	return len(pending), oldest
}

// addFlight counts into st the requests in flight at the look nearest to
// t (within half of tick), of request of ("" all).
func (c *collector) addFlight(st *load.Stats, t time.Time, tick time.Duration, of string) {
	for i := len(c.snaps) - 1; i >= 0; i-- {
		s := c.snaps[i]
		if d := s.at.Sub(t); d > tick/2 {
			continue
		} else if d < -tick/2 {
			return
		}
		for name, ages := range s.ages {
			if of == "" || name == of {
				for _, a := range ages {
					st.AddInFlight(a)
				}
			}
		}
		return
	}
}

type phaseStats struct {
	all    *load.Stats
	byName map[string]*load.Stats
	start  time.Time
	end    time.Time
}

type probeOutcome struct {
	at      time.Time
	check   int // index in the experiment's steady_state
	ok      bool
	what    string
	latency time.Duration
}

// stopOutcome is one evaluation of a stop condition on a Prometheus (an
// alert, a query) at a tick: whether it held, or why it could not be
// evaluated.
type stopOutcome struct {
	at    time.Time
	stop  int // index in stop_when
	holds bool
	value *float64
	err   string
	since time.Time // a firing alert's: since when its condition has held
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

// phaseSummary summarizes a phase's traffic, for all requests or one; in
// a phase that goes on, what hangs in it counts by its age so far. ok is
// false when the phase, or the named request in it, saw nothing.
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
	st := load.NewStats()
	switch {
	case of == "":
		st.Merge(p.all)
	case p.byName[of] != nil:
		st.Merge(p.byName[of])
	}
	if p.end.IsZero() && c.flight != nil {
		for _, q := range c.flight.Pending(now) {
			if (of == "" || q.Request == of) && !q.Intended.Before(p.start) {
				st.AddInFlight(now.Sub(q.Intended))
			}
		}
	}
	sum := st.Summary(end.Sub(p.start))
	if of != "" && sum.Count == 0 && sum.InFlight == 0 {
		return sum, false
	}
	return sum, true
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

// window summarizes the traffic that finished in [from, to), and the
// requests in flight at to (by the look within half a tick of it), whose
// ages count in its latencies.
func (c *collector) window(from, to time.Time, of string, tick time.Duration) load.Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := load.NewStats()
	c.addFlight(st, to, tick, of)
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

func (c *collector) addStop(o stopOutcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stops = append(c.stops, o)
}

// probeOutcomes returns the probes' runs in [from, to).
func (c *collector) probeOutcomes(from, to time.Time) []probeOutcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []probeOutcome
	for _, o := range c.probes {
		if !o.at.Before(from) && o.at.Before(to) {
			out = append(out, o)
		}
	}
	return out
}

// stopOutcomes returns a stop condition's evaluations in [from, to).
func (c *collector) stopOutcomes(stop int, from, to time.Time) []stopOutcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []stopOutcome
	for _, o := range c.stops {
		if o.stop == stop && !o.at.Before(from) && o.at.Before(to) {
			out = append(out, o)
		}
	}
	return out
}

// lastEvaluated is when a stop condition was last evaluated without an
// error, and the last error since; zero when never.
func (c *collector) lastEvaluated(stop int) (time.Time, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last time.Time
	var lastErr string
	for _, o := range c.stops {
		if o.stop != stop {
			continue
		}
		if o.err == "" {
			last, lastErr = o.at, ""
		} else {
			lastErr = o.err
		}
	}
	return last, lastErr
}

// probeSummary summarizes a probe's runs in [from, to) as traffic is:
// Count the runs, Errors the failures, latencies their durations.
func (c *collector) probeSummary(check int, from, to time.Time) load.Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := load.NewStats()
	for _, o := range c.probes {
		if o.check == check && !o.at.Before(from) && o.at.Before(to) {
			code := 200
			if !o.ok {
				code = 0
			}
			st.Add(load.Result{Latency: o.latency, Code: code})
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

// metricValue is a condition's metric in base units on a summary (of
// the traffic, or of a probe's runs).
func metricValue(c experiment.Condition, s load.Summary) float64 {
	switch c.Metric {
	case "error_rate":
		return s.ErrorRate
	case "probe_success":
		return 1 - s.ErrorRate
	case "throughput":
		return s.Throughput
	}
	d, _ := s.Latency(c.Stat)
	return d.Seconds()
}

// unit is how a condition's value is shown in results.
func unit(c experiment.Condition) string {
	switch c.Metric {
	case "error_rate", "probe_success":
		return "ratio"
	case "alert":
		return ""
	case "query":
		return "value"
	case "throughput":
		return "/s"
	}
	return "s"
}
