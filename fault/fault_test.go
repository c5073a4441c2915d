package fault_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
)

// memJournal keeps events; fail makes Append fail from then on.
type memJournal struct {
	events []journal.Event
	fail   bool
}

func (j *memJournal) Append(e journal.Event) error {
	if j.fail {
		return errors.New("disk full")
	}
	j.events = append(j.events, e)
	return nil
}

func (j *memJournal) types(id string) []string {
	var out []string
	for _, e := range j.events {
		if e.ID == id {
			out = append(out, e.Type)
		}
	}
	return out
}

func newFault(j *memJournal) *fault.Fault {
	n := 0
	return fault.New(experiment.Fault{Name: "f"}, nil, fault.Env{Journal: j, NextID: func() string { n++; return string(rune('0' + n)) }})
}

// Each outcome of a change is journaled as the protocol says, and only
// what may be in place is taken back, latest first.
func TestStepOutcomes(t *testing.T) {
	j := &memJournal{}
	f := newFault(j)
	var reverted []string
	step := func(name string, doErr error) error {
		return f.Step(context.Background(), fault.Step{What: name,
			Do:     func(context.Context) error { return doErr },
			Revert: func(context.Context) error { reverted = append(reverted, name); return nil }})
	}
	if err := step("done", nil); err != nil {
		t.Fatal(err)
	}
	if err := step("refused", fault.NotApplied(errors.New("400"))); !fault.IsNotApplied(err) {
		t.Fatalf("refused step: %v", err)
	}
	if err := step("lost answer", errors.New("timeout")); err == nil {
		t.Fatal("an unknown outcome returned no error")
	}
	if err := step("so already", fault.ErrNoChange); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"1": {journal.Intent, journal.Done},
		"2": {journal.Intent, journal.Failed},
		"3": {journal.Intent, journal.Unknown},
		"4": {journal.Intent, journal.Done, journal.Undone},
	} {
		if got := j.types(id); !slices.Equal(got, want) {
			t.Errorf("step %s journaled %v, want %v", id, got, want)
		}
	}
	if err := f.Revert(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(reverted, []string{"lost answer", "done"}) {
		t.Errorf("reverted %v, want the unknown one and the done one, latest first", reverted)
	}
	if got := j.types("3"); got[len(got)-1] != journal.Undone {
		t.Errorf("the unknown step after Revert: %v, want undone", got)
	}
	if err := f.Revert(context.Background()); err != nil || len(reverted) != 2 {
		t.Errorf("a second Revert did something: %v %v", err, reverted)
	}
}

// A change whose intent cannot be journaled is not made.
func TestStepNotMadeWithoutTheJournal(t *testing.T) {
	j := &memJournal{fail: true}
	f := newFault(j)
	made := false
	err := f.Step(context.Background(), fault.Step{Do: func(context.Context) error { made = true; return nil }})
	if err == nil || made {
		t.Fatalf("Step with a failing journal: %v, made %v; want an error and no change", err, made)
	}
}

// A step without a Revert of its own is undone through the registry's
// undo of its kind, as recover would.
func TestRevertThroughTheRegistry(t *testing.T) {
	reg := fault.NewRegistry()
	var undone []string
	reg.RegisterUndo("note", func(_ context.Context, u *journal.Undo) (string, error) {
		undone = append(undone, u.Path)
		return "noted", nil
	})
	j := &memJournal{}
	f := newFault(j)
	f.Registry = reg
	if err := f.Step(context.Background(), fault.Step{Undo: &journal.Undo{Kind: "note", Path: "x"}, Do: func(context.Context) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := f.Revert(context.Background()); err != nil || !slices.Equal(undone, []string{"x"}) {
		t.Fatalf("Revert = %v, undone %v", err, undone)
	}
	if _, err := reg.Undo(context.Background(), &journal.Undo{Kind: "other"}); err == nil {
		t.Error("an unknown undo kind was accepted")
	}
}

// Status says what a journaled change put in place through the registry:
// its undo kind's own words, else what the step said, else the kind.
func TestInPlaceThroughTheRegistry(t *testing.T) {
	r := fault.NewRegistry()
	r.RegisterInPlace("feature_flag", func(e journal.Event) string { return "flag " + e.Undo.Name + " flipped" })
	for _, tt := range []struct {
		e    journal.Event
		want string
	}{
		{journal.Event{Undo: &journal.Undo{Kind: "feature_flag", Name: "new-checkout"}, Message: "flip"}, "flag new-checkout flipped"},
		{journal.Event{Undo: &journal.Undo{Kind: "other"}, Message: "what the step said"}, "what the step said"},
		{journal.Event{Undo: &journal.Undo{Kind: "other"}}, "other"},
		{journal.Event{Message: "no undo"}, "no undo"},
	} {
		if got := r.InPlace(tt.e); got != tt.want {
			t.Errorf("InPlace(%+v) = %q, want %q", tt.e, got, tt.want)
		}
	}
}
