package state_test

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRegisterAndList(t *testing.T) {
	dir := t.TempDir()
	self, err := process.Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	done, err := state.Register(dir, state.Run{Name: "x", Out: "/tmp/x", Runner: self})
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := state.Runs(dir)
	if len(runs) != 1 || runs[0].Name != "x" || !runs[0].Alive() {
		t.Fatalf("Runs = %+v, want the live run", runs)
	}
	gone := runs[0]
	gone.Runner.Start++
	if gone.Alive() {
		t.Fatal("a run whose pid has another start time counts as alive")
	}
	done()
	if runs, _ := state.Runs(dir); len(runs) != 0 {
		t.Fatalf("after deregistering: %+v", runs)
	}
}

func TestHaltCancelsWatchers(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := state.Watch(context.Background(), dir)
	defer cancel()
	if err := state.Halt(dir, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not see the halt")
	}
	if halted, note := state.Halted(dir); !halted || note == "" {
		t.Fatalf("Halted = %v %q", halted, note)
	}
	if err := state.Resume(dir); err != nil {
		t.Fatal(err)
	}
	if halted, _ := state.Halted(dir); halted {
		t.Fatal("still halted after Resume")
	}
}
