package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/plan"
)

// faultRun is one fault of the run and what became of it. How it is
// injected and reverted is its family's (the registry's); the run decides
// when.
type faultRun struct {
	spec       experiment.Fault // references filled in once setup knows the addresses
	window     plan.Window      // when the plan has it in place
	f          *fault.Fault     // nil until injected
	active     bool             // something of it is in place, or may be
	injectedAt time.Time
	revertedAt time.Time
	err        string
}

// inject applies a fault through its family.
func (r *run) inject(ctx context.Context, fr *faultRun) error {
	fam := r.reg.Family(fr.spec.Action)
	if fam == nil {
		return fmt.Errorf("no fault family does %s (%T): register one", fr.spec.Action.Kind(), fr.spec.Action)
	}
	var t any
	if fr.spec.Target != "" {
		t = r.targets.Get(fr.spec.Target)
	}
	fr.f = fault.New(fr.spec, t, fault.Env{Journal: r, NextID: r.nextID, Run: r.id, Dir: r.opts.OutDir, Rand: r.rand,
		Log: r.procLog, MaxTargets: r.x.MaxTargets, Registry: r.reg, Guard: r.guard})
	err := fam.Inject(ctx, fr.f)
	fr.active = fr.f.Pending() // what it did before an error is reverted too
	return err
}

// revertFault reverts one fault now, on a context of its own.
func (r *run) revertFault(fr *faultRun) {
	if !fr.active {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fr.f.Revert(ctx); err != nil {
		fr.err = strings.TrimSpace(fr.err + " revert: " + err.Error())
		r.verdict(Error, fmt.Sprintf("fault %q could not be reverted: %v", fr.spec.Name, err))
	}
	fr.active = false
	fr.revertedAt = time.Now()
	r.progressf("reverted %q", fr.spec.Name)
}

// rollback reverts every fault still in place, latest first. It runs on
// every way out and is harmless the second time.
func (r *run) rollback() {
	for i := len(r.faults) - 1; i >= 0; i-- {
		r.revertFault(r.faults[i])
	}
}

// hits and evidence of a fault, for the result.
func (fr *faultRun) hits() []string {
	if fr.f == nil {
		return []string{}
	}
	return fr.f.Hits()
}

func (fr *faultRun) evidence() []string {
	if fr.f == nil {
		return []string{}
	}
	return fr.f.Evidences()
}
