package plan_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/plan"
)

const src = `name: schedule
targets:
  link: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:9"}}
faults:
  - {name: from the start, target: link, latency: {delay: 10ms}}
  - {name: a window, target: link, latency: {delay: 10ms}, start: 1s, duration: 2s}
  - {name: past the end, target: link, latency: {delay: 10ms}, start: 4s, duration: 10s}
inject: 5s
baseline: 1s
`

func parse(t *testing.T) *experiment.Experiment {
	t.Helper()
	x, err := experiment.Parse("schedule.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// Build fixes each fault's window from the start of injection: a fault
// with no duration lasts until injection ends, and none outlasts it.
func TestBuildFixesTheSchedule(t *testing.T) {
	p, err := plan.Build(parse(t), plan.Options{Seed: 42, Faults: builtin.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	want := []plan.Window{
		{Fault: "from the start", Start: 0, End: 5 * time.Second},
		{Fault: "a window", Start: time.Second, End: 3 * time.Second},
		{Fault: "past the end", Start: 4 * time.Second, End: 5 * time.Second},
	}
	got := p.Windows()
	if len(got) != len(want) {
		t.Fatalf("windows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("window %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if p.Seed() != 42 {
		t.Errorf("seed %d, want the one given, 42", p.Seed())
	}
}

// A plan is not changed by what its callers do with what it returns.
func TestPlanIsImmutable(t *testing.T) {
	p, err := plan.Build(parse(t), plan.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	w := p.Windows()
	w[0].End = time.Hour
	if p.Windows()[0].End == time.Hour {
		t.Error("changing the windows returned changed the plan's")
	}
}

// With no seed given, one is picked (and a run records it).
func TestBuildPicksASeed(t *testing.T) {
	p, err := plan.Build(parse(t), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Seed() == 0 {
		t.Error("no seed picked")
	}
	var b bytes.Buffer
	if err := p.Describe(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "seed:") {
		t.Errorf("the dry run names a seed that was not given:\n%s", &b)
	}
}

// Every fault needs a family in the run's registry: a plan for a registry
// without it is refused before anything starts, naming the fault.
func TestBuildNeedsAFamilyForEachFault(t *testing.T) {
	_, err := plan.Build(parse(t), plan.Options{Faults: fault.NewRegistry()})
	if err == nil || !strings.Contains(err.Error(), `fault "from the start"`) || !strings.Contains(err.Error(), "latency") {
		t.Fatalf("Build with an empty registry: %v, want the fault and its kind named", err)
	}
}

// The dry run says the phases, the targets and each fault's window as the
// plan has it, and that nothing was touched.
func TestDescribeSaysThePlan(t *testing.T) {
	p, err := plan.Build(parse(t), plan.Options{Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Describe(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"phases: baseline 1s, inject 5s",
		"embedded proxy 127.0.0.1:0 -> 127.0.0.1:9",
		`"from the start"`, "[0s, end of inject)",
		`"a window"`, "[1s, 3s)",
		`"past the end"`, "[4s, 5s)",
		"stop conditions: none",
		"seed: 42",
		"dry run: nothing was started or touched",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run lacks %q:\n%s", want, out)
		}
	}
}
