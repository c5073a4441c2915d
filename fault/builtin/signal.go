package builtin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/target"
)

// Faults on processes: stop (SIGSTOP, resumed on revert) and kill (a
// signal; a launched process is launched again on revert, one that runs
// its own restart command), each on the selected instances and all their
// descendants.

// victims selects a fault's instances and lists them with every
// descendant.
func victims(f *fault.Fault, expectExit bool) (*target.Process, []*target.Instance, []journal.Proc, error) {
	t, ok := f.Target.(*target.Process)
	if !ok {
		return nil, nil, nil, fmt.Errorf("fault %s: %s acts on a process target", f.Spec.Name, f.Spec.Action.Kind())
	}
	ins, err := t.Select(f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return nil, nil, nil, err
	}
	var procs []journal.Proc
	for _, in := range ins {
		if expectExit {
			in.ExpectExit.Store(true)
		}
		tree, err := process.Tree(in.Proc.PID)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("target %s[%d]: %w", t.Spec().Name, in.Index, err)
		}
		procs = append(procs, tree...)
		f.Hit(fmt.Sprintf("pid %d (%s[%d], %d processes)", in.Proc.PID, t.Spec().Name, in.Index, len(tree)))
	}
	return t, ins, procs, nil
}

// signal sends sig to procs; those it could not reach are said as
// evidence, the others are signalled all the same.
func signal(f *fault.Fault, procs []journal.Proc, sig syscall.Signal) {
	if err := process.Signal(procs, sig); err != nil {
		f.Evidence("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
}

func injectStop(ctx context.Context, f *fault.Fault, _ experiment.Stop) error {
	if t, ok := f.Target.(*target.Pods); ok {
		return injectPodSignal(ctx, f, t, "SIGSTOP")
	}
	_, _, procs, err := victims(f, false)
	if err != nil {
		return err
	}
	err = f.Step(ctx, fault.Step{
		What: syscall.SIGSTOP.String(),
		Undo: &journal.Undo{Kind: "sigcont", Procs: procs},
		Do: func(context.Context) error {
			signal(f, procs, syscall.SIGSTOP)
			return nil
		},
		// A process gone meanwhile is neither stopped nor running.
		Revert: func(context.Context) error { return process.IgnoreGone(process.Signal(procs, syscall.SIGCONT)) },
	})
	if err != nil {
		return err
	}
	f.Evidence("%s stopped (state T)", plural(countState(procs, 'T'), "process", "processes"))
	return nil
}

func injectKill(ctx context.Context, f *fault.Fault, a experiment.Kill) error {
	if t, ok := f.Target.(*target.Pods); ok {
		return injectPodSignal(ctx, f, t, a.Signal)
	}
	sig := process.Signals[a.Signal]
	t, ins, procs, err := victims(f, true)
	if err != nil {
		return err
	}
	step := fault.Step{
		What: sig.String(),
		Do: func(context.Context) error {
			signal(f, procs, sig)
			return nil
		},
	}
	switch {
	case f.Spec.Irreversible: // nothing to put back
	case t.Launched():
		step.Revert = func(ctx context.Context) error {
			var errs []error
			for _, in := range ins {
				<-in.Done // it was killed: wait for the exit before reusing its port
				errs = append(errs, t.Launch(ctx, in))
			}
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("restart: %w", err)
			}
			return nil
		}
	default: // its restart command, which recover runs too
		step.Undo = &journal.Undo{Kind: "exec", Command: t.Spec().Process.Restart}
	}
	if err := f.Step(ctx, step); err != nil {
		return err
	}
	f.Evidence("%s sent to %s", process.SignalName(sig), plural(len(procs), "process", "processes"))
	return nil
}

func countState(procs []journal.Proc, want byte) int {
	n := 0
	for _, p := range procs {
		if st, err := process.State(p); err == nil && st == want {
			n++
		}
	}
	return n
}

func undoSigcont(_ context.Context, u *journal.Undo) (string, error) {
	err := process.Signal(u.Procs, syscall.SIGCONT)
	return fmt.Sprintf("resumed %d process(es)", len(u.Procs)), process.IgnoreGone(err)
}

func undoKill(_ context.Context, u *journal.Undo) (string, error) {
	if u.Group {
		n := 0
		var errs []error
		for _, p := range u.Procs {
			k, err := process.SignalGroup(p, syscall.SIGKILL)
			n += k
			errs = append(errs, err)
		}
		return fmt.Sprintf("stopped %d launched process(es) and what they started", n), errors.Join(errs...)
	}
	err := process.Signal(u.Procs, syscall.SIGKILL)
	return fmt.Sprintf("stopped %d launched process(es)", len(u.Procs)), process.IgnoreGone(err)
}

func stoppedInPlace(e journal.Event) string {
	return fmt.Sprintf("%d process(es) stopped: pid %s", len(e.Undo.Procs), pids(e.Undo))
}

// launchedInPlace: what a kill undo stops is what a run launched (a
// process restarted, say).
func launchedInPlace(e journal.Event) string {
	if e.Message != "" {
		return fmt.Sprintf("pid %s: %s", pids(e.Undo), e.Message)
	}
	return "pid " + pids(e.Undo)
}
