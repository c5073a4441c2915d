package runner

import (
	"time"

	"github.com/faultline/faultline/record"
)

// The run's records live in package record; these names keep the
// runner's API as it was.
type (
	Result        = record.Result
	TrafficRecord = record.TrafficRecord
	PhaseRecord   = record.PhaseRecord
	CheckRecord   = record.CheckRecord
	FaultRecord   = record.FaultRecord
	Stamp         = record.Stamp
	Sample        = record.Sample
	ProbeSample   = record.ProbeSample
	StopSample    = record.StopSample
)

// Verdicts.
const (
	Passed  = record.Passed
	Failed  = record.Failed
	Aborted = record.Aborted
	Error   = record.Error
)

// FormatValue writes a check's value in its unit (CheckRecord.Unit).
func FormatValue(v float64, unit string) string { return record.FormatValue(v, unit) }

// MarshalResult writes a result as result.json has it.
func MarshalResult(res *Result) ([]byte, error) { return record.MarshalResult(res) }

func stampPtr(t time.Time) *Stamp { return record.StampPtr(t) }
