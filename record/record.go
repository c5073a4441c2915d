package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Verdicts.
const (
	Passed  = "PASSED"
	Failed  = "FAILED"
	Aborted = "ABORTED"
	Error   = "ERROR"
)

// Story is what a run teaches, told as a post-mortem is: the weakness an
// experiment looks for and the fix that holds against it, a sentence each,
// with the places in the code that are each ("examples/shop/checkout.go:116").
type Story struct {
	Weakness   string   `json:"weakness"`
	WeaknessAt []string `json:"weakness_at,omitempty"`
	Fix        string   `json:"fix"`
	FixAt      []string `json:"fix_at,omitempty"`
}

// Result is result.json.
type Result struct {
	Verdict    string            `json:"verdict"`
	Reasons    []string          `json:"reasons"`
	Name       string            `json:"name"`
	File       string            `json:"file"`
	Hypothesis string            `json:"hypothesis,omitempty"`
	Seed       int64             `json:"seed"`
	Vars       map[string]string `json:"vars"`
	// Flags are the command-line flags that changed what ran.
	Flags []string `json:"flags,omitempty"`
	// Replay is the command that replays the run, when it is not "faultline
	// run FILE" with the seed, vars and flags (a demo run's, say).
	Replay string `json:"replay,omitempty"`
	// Story, when set, is what the run teaches: the weakness its
	// experiment looks for and the fix that holds against it.
	Story         *Story        `json:"story,omitempty"`
	Started       Stamp         `json:"started"`
	Ended         Stamp         `json:"ended"`
	Phases        []PhaseRecord `json:"phases"`
	Checks        []CheckRecord `json:"checks"`
	Faults        []FaultRecord `json:"faults"`
	TimeToRecover *float64      `json:"time_to_recover"`
	// Traffic summarizes each phase's traffic: all requests, then each
	// named request.
	Traffic []TrafficRecord `json:"traffic"`
	// Timeout is the traffic's client timeout (seconds): a latency that
	// plateaus there is requests given up, not answered.
	Timeout float64 `json:"timeout,omitempty"`
}

// TrafficRecord summarizes the traffic that finished in one phase, for
// every request (Request empty) or one named request. Latencies in seconds.
type TrafficRecord struct {
	Phase      string  `json:"phase"`
	Request    string  `json:"request,omitempty"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	ErrorRate  float64 `json:"error_rate"`
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50"`
	P95        float64 `json:"p95"`
	P99        float64 `json:"p99"`
	Max        float64 `json:"max"`
}

// PhaseRecord is a phase's span.
type PhaseRecord struct {
	Name  string `json:"name"`
	Start Stamp  `json:"start"`
	End   Stamp  `json:"end"`
}

// CheckRecord is one steady-state or stop check in one phase.
type CheckRecord struct {
	Condition string   `json:"condition"`
	Phase     string   `json:"phase"`
	Held      bool     `json:"held"`
	Value     *float64 `json:"value"`
	Unit      string   `json:"unit,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	Detail    string   `json:"detail,omitempty"`
	// Fired marks a stop condition that was met and aborted the run.
	Fired bool `json:"fired,omitempty"`
}

// FaultRecord is what a fault did.
type FaultRecord struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Action string `json:"action"`
	// Settings is the fault as the file gives it, in one line.
	Settings   string   `json:"settings,omitempty"`
	Hit        []string `json:"hit"`
	InjectedAt *Stamp   `json:"injected_at"`
	RevertedAt *Stamp   `json:"reverted_at"`
	Evidence   []string `json:"evidence"`
	Error      string   `json:"error,omitempty"`
}

// Stamp is a time written as RFC 3339 UTC with milliseconds.
type Stamp time.Time

func (s Stamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(s).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

func (s *Stamp) UnmarshalJSON(b []byte) error {
	var t time.Time
	err := json.Unmarshal(b, &t)
	*s = Stamp(t)
	return err
}

// StampPtr is t as a *Stamp, nil for the zero time.
func StampPtr(t time.Time) *Stamp {
	if t.IsZero() {
		return nil
	}
	s := Stamp(t)
	return &s
}

// Sample is one line of samples.jsonl: the traffic over one tick.
type Sample struct {
	Time         Stamp    `json:"time"`
	Phase        string   `json:"phase"`
	Requests     int64    `json:"requests"`
	Errors       int64    `json:"errors"`
	ErrorRate    float64  `json:"error_rate"`
	Throughput   float64  `json:"throughput"`
	P50          float64  `json:"p50"`
	P95          float64  `json:"p95"`
	P99          float64  `json:"p99"`
	Max          float64  `json:"max"`
	ActiveFaults []string `json:"active_faults"`
	// InFlight is the requests due and not finished at the tick, and
	// Oldest the age of the oldest (seconds): a hang, as it hangs.
	InFlight int64   `json:"in_flight,omitempty"`
	Oldest   float64 `json:"oldest,omitempty"`
	// Probes are the probes that ran in the tick, each with whether it
	// passed and how long it took.
	Probes []ProbeSample `json:"probes,omitempty"`
	// Stops are the evaluations of stop conditions on a Prometheus.
	Stops []StopSample `json:"stops,omitempty"`
}

// ProbeSample is one run of a probe.
type ProbeSample struct {
	Probe   string  `json:"probe"` // its name, else how the file gives it
	Passed  bool    `json:"passed"`
	Latency float64 `json:"latency"` // seconds
	Detail  string  `json:"detail,omitempty"`
}

// StopSample is one evaluation of a stop condition on a Prometheus.
type StopSample struct {
	Condition string   `json:"condition"`
	Holds     bool     `json:"holds"`
	Value     *float64 `json:"value,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// FormatValue writes a check's value in its unit (CheckRecord.Unit).
func FormatValue(v float64, unit string) string {
	switch unit {
	case "ratio":
		return fmt.Sprintf("%.2f%%", v*100)
	case "s":
		d := time.Duration(v * float64(time.Second))
		if d >= time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(10 * time.Microsecond).String()
	case "/s":
		return fmt.Sprintf("%.1f/s", v)
	}
	return fmt.Sprint(v)
}

// MarshalResult writes a result as result.json has it: indented, with
// conditions readable ("error_rate < 1%", not "\u003c").
func MarshalResult(res *Result) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
