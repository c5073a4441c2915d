package runner_test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/runner"
	"github.com/faultline/faultline/target"
)

// panicking is an action whose family stops a process, then panics in a
// goroutine of its own, as a bug in a fault or a probe could.
type panicking struct{}

func (panicking) Kind() string { return "panicking" }

// TestPanicInAGoroutineIsARollback: a panic in any goroutine of the run
// ends it with verdict ERROR after every fault is reverted, instead of
// crashing with a process left stopped.
func TestPanicInAGoroutineIsARollback(t *testing.T) {
	cmd, marker := processtest.Sleepers(t)
	reg := builtin.Registry()
	fault.RegisterFunc(reg, func(ctx context.Context, f *fault.Fault, _ panicking) error {
		var procs []journal.Proc
		for _, in := range f.Target.(*target.Process).Instances {
			tree, err := process.Tree(in.Proc.PID)
			if err != nil {
				return err
			}
			procs = append(procs, tree...)
		}
		err := f.Step(ctx, fault.Step{Undo: &journal.Undo{Kind: "sigcont", Procs: procs},
			Do: func(context.Context) error { return process.Signal(procs, syscall.SIGSTOP) }})
		if err != nil {
			return err
		}
		f.Go("a test goroutine", func() { panic("boom") })
		return nil
	})
	x := &experiment.Experiment{
		Name:        "panics",
		Targets:     []experiment.Target{{Name: "victim", Process: &experiment.ProcessTarget{Match: marker}}},
		Baseline:    100 * time.Millisecond,
		Inject:      20 * time.Second,
		Recovery:    time.Second,
		MaxTargets:  10,
		MaxDuration: time.Minute,
		Faults:      []experiment.Fault{{Name: "stop and panic", Target: "victim", Select: experiment.Selection{Mode: "ALL"}, Action: panicking{}}},
	}
	start := time.Now()
	res, err := runner.Run(context.Background(), build(t, x, 1), runner.Options{OutDir: filepath.Join(t.TempDir(), "run"), Tick: 100 * time.Millisecond, Faults: reg})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != runner.Error || !strings.Contains(strings.Join(res.Reasons, "; "), "a test goroutine panicked: boom") {
		t.Fatalf("verdict %s (%v), want ERROR naming the panic", res.Verdict, res.Reasons)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("the run went on after the panic (%v)", time.Since(start))
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("the victim is still stopped after the run")
	}
}
