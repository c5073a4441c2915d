package load

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// maxLatency is the longest latency a histogram records; longer ones are
// recorded as this.
const maxLatency = time.Hour

// Stats aggregates results: counts, errors and an HDR histogram of
// latencies (microsecond resolution, 3 significant digits).
type Stats struct {
	hist     *hdrhistogram.Histogram
	count    int64
	errors   int64
	inFlight int64
}

// NewStats returns empty stats.
func NewStats() *Stats {
	return &Stats{hist: hdrhistogram.New(1, maxLatency.Microseconds(), 3)}
}

// Add counts one result.
func (s *Stats) Add(r Result) {
	s.count++
	if r.Failed() {
		s.errors++
	}
	us := min(max(r.Latency.Microseconds(), 1), maxLatency.Microseconds())
	_ = s.hist.RecordValue(us) // in range by construction
}

// AddInFlight counts a request not finished yet by its age so far: in the
// latency statistics (a hang is as slow as it has been), not in the count
// of requests or errors, which are of finished ones.
func (s *Stats) AddInFlight(age time.Duration) {
	s.inFlight++
	us := min(max(age.Microseconds(), 1), maxLatency.Microseconds())
	_ = s.hist.RecordValue(us)
}

// Merge adds o's results to s.
func (s *Stats) Merge(o *Stats) {
	s.count += o.count
	s.errors += o.errors
	s.inFlight += o.inFlight
	s.hist.Merge(o.hist)
}

// Summary is what Stats say over a span of time.
type Summary struct {
	Count, Errors int64
	// InFlight is the requests not finished that the latencies count by
	// their age so far.
	InFlight int64
	// ErrorRate is Errors/Count, 0 without requests.
	ErrorRate float64
	// Throughput is non-error responses per second over the span.
	Throughput                    float64
	P50, P90, P95, P99, P999, Max time.Duration
	Mean                          time.Duration
}

// Summary summarizes the stats of a span of the given length.
func (s *Stats) Summary(span time.Duration) Summary {
	sum := Summary{Count: s.count, Errors: s.errors, InFlight: s.inFlight}
	if s.count > 0 {
		sum.ErrorRate = float64(s.errors) / float64(s.count)
	}
	if span > 0 {
		sum.Throughput = float64(s.count-s.errors) / span.Seconds()
	}
	q := func(p float64) time.Duration { return time.Duration(s.hist.ValueAtQuantile(p)) * time.Microsecond }
	sum.P50, sum.P90, sum.P95, sum.P99, sum.P999 = q(50), q(90), q(95), q(99), q(99.9)
	sum.Max = time.Duration(s.hist.Max()) * time.Microsecond
	sum.Mean = time.Duration(s.hist.Mean() * float64(time.Microsecond))
	return sum
}

// Latency returns a latency statistic by name: p50, p90, p95, p99, p99.9,
// mean or max; ok is false for another name.
func (s Summary) Latency(stat string) (d time.Duration, ok bool) {
	switch stat {
	case "p50":
		return s.P50, true
	case "p90":
		return s.P90, true
	case "p95":
		return s.P95, true
	case "p99":
		return s.P99, true
	case "p99.9":
		return s.P999, true
	case "mean":
		return s.Mean, true
	case "max":
		return s.Max, true
	}
	return 0, false
}
