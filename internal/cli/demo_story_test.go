package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/faultline/faultline/examples/experiments"
)

// The checklist says, for each item, both builds' verdicts, why it did not
// run (skipped, or not yet covered), and marks a run not as expected.
func TestChecklistRows(t *testing.T) {
	sum := &demoSummary{
		Runs: []demoRow{
			{Experiment: "cache-dies", Build: "fragile", Verdict: "FAILED", Expected: true},
			{Experiment: "cache-dies", Build: "resilient", Verdict: "PASSED", Expected: true},
			{Experiment: "slow-payment", Build: "fragile", Verdict: "PASSED", Expected: false},
			{Experiment: "slow-payment", Build: "resilient", Verdict: "PASSED", Expected: true},
		},
		Skipped: []demoSkip{{"disk-fills", "needs a small tmpfs"}},
	}
	rows := demoChecklist(sum)
	if len(rows) != len(experiments.Quarterly) {
		t.Fatalf("%d rows, want %d", len(rows), len(experiments.Quarterly))
	}
	by := map[string]checklistRow{}
	for _, r := range rows {
		by[r.Experiment] = r
	}
	if r := by["cache-dies"]; r.Fragile != "FAILED" || r.Resilient != "PASSED" || !r.Expected || r.NotRun != "" {
		t.Errorf("cache-dies: %+v", r)
	}
	if r := by["slow-payment"]; r.Expected || r.NotRun != "" {
		t.Errorf("slow-payment (fragile passed): %+v, want not as expected", r)
	}
	if r := by["disk-fills"]; r.NotRun != "not run: needs a small tmpfs" {
		t.Errorf("disk-fills: %+v", r)
	}
	if r := by["db-nulls"]; r.NotRun != "not run" {
		t.Errorf("db-nulls: %+v", r)
	}
	if covered, expected := checklistTotals(rows); covered != 2 || expected != 1 {
		t.Errorf("totals %d covered, %d as expected; want 2 and 1", covered, expected)
	}
	var out bytes.Buffer
	printChecklist(&out, sum)
	if !strings.Contains(out.String(), "2 of 15 failures covered on this machine, 1 with both verdicts as expected") ||
		!strings.Contains(out.String(), "PASSED (!)") {
		t.Errorf("checklist:\n%s", out.String())
	}
}
