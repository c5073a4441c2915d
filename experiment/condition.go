package experiment

import (
	"fmt"
	"github.com/faultline/faultline/internal/decode"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Condition is "METRIC [of REQUEST] OP VALUE [for DURATION]", e.g.
// "latency p99 of checkout < 3.5s for 5s" or "error_rate < 1%".
type Condition struct {
	// Text is the condition as written.
	Text string
	// Metric is "error_rate", "latency" or "throughput" of the traffic;
	// "probe_success" or "probe_latency" of the probe named Of; "alert"
	// (holds while Alert fires) or "query" (holds while a series of Query
	// meets Op Value) of the Prometheus at Prometheus.
	Metric string
	// Stat is the latency statistic: p50, p90, p95, p99, p99.9, mean or max.
	Stat string
	// Of names the request the metric is scoped to; empty means all.
	Of string
	// Op is <, <=, > or >=.
	Op string
	// Value is in base units: seconds for latency, a fraction (0.02 for
	// 2%) for error_rate, responses per second for throughput; with
	// Baseline, a multiple of the baseline's value.
	Value    float64
	Baseline bool
	// For is how long the condition must hold without a break; zero means
	// it is judged on the phase's aggregate.
	For time.Duration
	// Prometheus, Alert, Query and Token are an alert's or a query's.
	Prometheus, Alert, Query, Token string
}

// Measures says what a condition reads: the run's traffic, its probes,
// or a Prometheus.
func (c Condition) Measures() string {
	switch c.Metric {
	case "probe_success", "probe_latency":
		return "probes"
	case "alert", "query":
		return "prometheus"
	}
	return "traffic"
}

// LatencyStats are the statistics a latency condition may name.
var LatencyStats = []string{"p50", "p90", "p95", "p99", "p99.9", "mean", "max"}

var ops = []string{"<", "<=", ">", ">="}

// ParseCondition parses one condition.
func ParseCondition(s string) (Condition, error) {
	c := Condition{Text: s}
	tok := strings.Fields(s)
	next := func() string {
		if len(tok) == 0 {
			return ""
		}
		t := tok[0]
		tok = tok[1:]
		return t
	}
	switch m := next(); m {
	case "error_rate", "throughput", "probe_success":
		c.Metric = m
	case "latency", "probe_latency":
		c.Metric = m
		c.Stat = next()
		if !slices.Contains(LatencyStats, c.Stat) {
			return c, fmt.Errorf("%s needs a statistic, one of %s; got %q", m, strings.Join(LatencyStats, ", "), c.Stat)
		}
	case "":
		return c, fmt.Errorf("empty condition: want METRIC OP VALUE, e.g. error_rate < 1%%")
	default:
		return c, fmt.Errorf("unknown metric %q%s", m, decode.Suggest(m, []string{"error_rate", "latency", "throughput", "probe_success", "probe_latency"}))
	}
	op := next()
	if op == "of" {
		if c.Of = next(); c.Of == "" {
			return c, fmt.Errorf("'of' needs a request name")
		}
		op = next()
	}
	if c.Measures() == "probes" && c.Of == "" {
		return c, fmt.Errorf("%s needs the probe it measures: %s of NAME ... (give the probe a name:)", c.Metric, c.Metric)
	}
	if !slices.Contains(ops, op) {
		return c, fmt.Errorf("want a comparison (<, <=, >, >=) after %s, got %q", c.Metric, op)
	}
	c.Op = op
	val := next()
	if val == "" {
		return c, fmt.Errorf("no value after %q", op)
	}
	if strings.HasSuffix(val, "x") && len(tok) > 0 && tok[0] == "baseline" {
		next()
		n, err := strconv.ParseFloat(strings.TrimSuffix(val, "x"), 64)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("want a positive multiple such as 3x baseline, got %q", val)
		}
		if c.Metric == "error_rate" || c.Metric == "probe_success" {
			return c, fmt.Errorf("%s cannot be a multiple of the baseline: give a percentage", c.Metric)
		}
		c.Value, c.Baseline = n, true
	} else {
		v, err := parseValue(c.Metric, val)
		if err != nil {
			return c, err
		}
		c.Value = v
	}
	if t := next(); t != "" {
		if t != "for" {
			return c, fmt.Errorf("unexpected %q after the value; only 'for DURATION' may follow", t)
		}
		d, err := time.ParseDuration(next())
		if err != nil || d <= 0 {
			return c, fmt.Errorf("'for' needs a positive duration such as 5s")
		}
		c.For = d
		if len(tok) > 0 {
			return c, fmt.Errorf("unexpected %q at the end", tok[0])
		}
	}
	return c, nil
}

// parseValue reads a value with the unit its metric takes.
func parseValue(metric, v string) (float64, error) {
	switch metric {
	case "error_rate", "probe_success":
		s, ok := strings.CutSuffix(v, "%")
		n, err := strconv.ParseFloat(s, 64)
		if !ok || err != nil || n < 0 || n > 100 {
			return 0, fmt.Errorf("%s takes a percentage from 0%% to 100%%, such as 2%%; got %q", metric, v)
		}
		return n / 100, nil
	case "latency", "probe_latency":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%s takes a duration such as 600ms or 3.5s, or Nx baseline; got %q", metric, v)
		}
		return d.Seconds(), nil
	default: // throughput
		s, ok := strings.CutSuffix(v, "/s")
		n, err := strconv.ParseFloat(s, 64)
		if !ok || err != nil || n < 0 {
			return 0, fmt.Errorf("throughput takes a rate such as 100/s, or Nx baseline; got %q", v)
		}
		return n, nil
	}
}

// Holds reports whether value (in base units; for a baseline condition,
// the baseline's value is given too) meets the condition.
func (c Condition) Holds(value, baseline float64) bool {
	limit := c.Value
	if c.Baseline {
		limit *= baseline
	}
	switch c.Op {
	case "<":
		return value < limit
	case "<=":
		return value <= limit
	case ">":
		return value > limit
	default:
		return value >= limit
	}
}
