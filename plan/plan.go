package plan

import (
	"fmt"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
)

// Plan is an experiment as a run will carry it out, fixed before anything
// starts: the schedule of its faults, the seed of every random choice,
// the selections as rules and the targets as specifications. What only
// setup can know (ports of 127.0.0.1:0, pids, the pods a fault selects
// when it starts, addresses) is resolved then, and journaled. A Plan is
// not changed once built.
type Plan struct {
	x         *experiment.Experiment
	seed      int64
	seedGiven bool
	windows   []Window
}

// Window is when a fault is in place, from the start of injection:
// [Start, End). Without a duration, a fault lasts until injection ends.
type Window struct {
	Fault      string
	Start, End time.Duration
}

// Options say how to build a plan.
type Options struct {
	// Seed seeds every random choice; zero picks one from the clock.
	Seed int64
	// Faults are the families the run will have; every fault of the
	// experiment must have one. Nil skips the check.
	Faults *fault.Registry
}

// Build fixes an experiment, read and checked by package experiment,
// into a plan.
func Build(x *experiment.Experiment, opts Options) (*Plan, error) {
	p := &Plan{x: x, seed: opts.Seed, seedGiven: opts.Seed != 0}
	if p.seed == 0 {
		p.seed = time.Now().UnixNano()
	}
	for _, f := range x.Faults {
		if opts.Faults != nil && opts.Faults.Family(f.Action) == nil {
			return nil, fmt.Errorf("fault %q: no fault family does %s (%T): the registry needs one", f.Name, f.Action.Kind(), f.Action)
		}
		end := x.Inject
		if f.Duration > 0 {
			end = min(f.Start+f.Duration, x.Inject)
		}
		p.windows = append(p.windows, Window{Fault: f.Name, Start: f.Start, End: end})
	}
	return p, nil
}

// Experiment is the experiment the plan carries out; it must not be
// changed.
func (p *Plan) Experiment() *experiment.Experiment { return p.x }

// Seed is the seed of every random choice of the run.
func (p *Plan) Seed() int64 { return p.seed }

// Windows are the faults' windows, in file order.
func (p *Plan) Windows() []Window { return append([]Window(nil), p.windows...) }
