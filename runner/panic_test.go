package runner

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/process/processtest"
)

// panicking is an action whose kind stops a process, then panics in a
// goroutine of its own, as a bug in a fault or a probe could.
type panicking struct{}

func (panicking) Kind() string { return "panicking" }

// TestPanicInAGoroutineIsARollback: a panic in any goroutine of the run
// ends it with verdict ERROR after every fault is reverted, instead of
// crashing with a process left stopped.
func TestPanicInAGoroutineIsARollback(t *testing.T) {
	cmd, marker := processtest.Sleepers(t)
	kinds[reflectTypeOf(panicking{})] = func(r *run, ctx context.Context, f *fault, t *target) error {
		if err := r.injectSignal(f, t, syscall.SIGSTOP); err != nil {
			return err
		}
		go r.guard("a test goroutine", func() { panic("boom") })
		return nil
	}
	defer delete(kinds, reflectTypeOf(panicking{}))
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
	res, err := Run(context.Background(), x, Options{OutDir: filepath.Join(t.TempDir(), "run"), Seed: 1, Tick: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != Error || !strings.Contains(strings.Join(res.Reasons, "; "), "a test goroutine panicked: boom") {
		t.Fatalf("verdict %s (%v), want ERROR naming the panic", res.Verdict, res.Reasons)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("the run went on after the panic (%v)", time.Since(start))
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("the victim is still stopped after the run")
	}
}

func reflectTypeOf(a experiment.Action) reflect.Type { return reflect.TypeOf(a) }
