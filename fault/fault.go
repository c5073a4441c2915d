package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
)

// Journal is where a fault's steps are written (a *journal.Writer).
type Journal interface {
	Append(journal.Event) error
}

// Env is what a run gives every fault.
type Env struct {
	Journal Journal
	// NextID returns a journal id no other step of the run has.
	NextID func() string
	// Run is the run's id, for names that must be the run's own (toxics,
	// tables, files); Dir the run directory.
	Run, Dir string
	// Rand is the run's seeded source: every random choice comes from it.
	Rand *rand.Rand
	// Log is processes.log, for what the fault's own processes print.
	Log io.Writer
	// MaxTargets caps what one fault may hit.
	MaxTargets int
	// Registry undoes steps that give no Revert of their own.
	Registry *Registry
	// Guard runs fn on a goroutine of the fault, turning a panic into the
	// run's end instead of a crash; nil runs fn as it is.
	Guard func(what string, fn func())
}

// Go runs fn on a goroutine of its own, under the run's guard.
func (f *Fault) Go(what string, fn func()) {
	go func() {
		if f.Guard == nil {
			fn()
			return
		}
		f.Guard(what, fn)
	}()
}

// Fault is one fault of a run, as its family sees it while injecting, and
// what became of it.
type Fault struct {
	// Spec is the fault as the file gives it, references filled in.
	Spec experiment.Fault
	// Target is what it acts on (a *target.Process, *target.Proxy, ...),
	// nil for a fault that needs none.
	Target any
	Env

	mu       sync.Mutex
	hit      []string
	evidence []string
	steps    []*step  // in the order made
	after    []func() // AtRevert's, in the order given
}

type step struct {
	id     string
	what   string
	undo   *journal.Undo
	revert func(context.Context) error
}

// New returns a fault of the run to be injected.
func New(spec experiment.Fault, target any, env Env) *Fault {
	return &Fault{Spec: spec, Target: target, Env: env}
}

// Hit records what the fault acts on ("pid 123 (web[0], 3 processes)").
func (f *Fault) Hit(what ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hit = append(f.hit, what...)
}

// Evidence records what shows the fault took effect, or how it ended.
func (f *Fault) Evidence(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evidence = append(f.evidence, fmt.Sprintf(format, args...))
}

// Hits and Evidences return what was recorded.
func (f *Fault) Hits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.hit...)
}

// Evidences returns the evidence recorded.
func (f *Fault) Evidences() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.evidence...)
}

// Pending reports whether Revert has anything to do: a step to take back,
// or a function to run.
func (f *Fault) Pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.steps)+len(f.after) > 0
}

// Step is one change a fault makes.
type Step struct {
	// What says the change in the journal ("add toxic X to proxy P").
	What string
	// Undo is how recover takes the change back with nothing but the
	// journal (the registry's undo of its kind); nil when the change cannot
	// outlive the run (a toxic on a proxy inside the runner).
	Undo *journal.Undo
	// Do makes the change. An error it wraps with NotApplied says nothing
	// was changed; any other error leaves the outcome unknown, and the
	// change is taken back on Revert as if it had been made.
	Do func(ctx context.Context) error
	// Revert takes the change back within the run; nil means the
	// registry's undo of Undo. A step with neither has nothing to take
	// back once made (a pod deleted, which its controller replaces).
	Revert func(ctx context.Context) error
}

// ErrNoChange, returned by a Step's Do, says the change was not needed: what
// it would make was so already (a node cordoned before the fault). The
// step is journaled done and undone at once, and nothing is reverted.
var ErrNoChange = errors.New("it was so already")

// notApplied marks an error after which nothing was changed.
type notApplied struct{ error }

func (e notApplied) Unwrap() error { return e.error }

// NotApplied marks err as the definite failure of a change: nothing was
// changed (an API answered 4xx, a command was refused before it ran).
func NotApplied(err error) error {
	if err == nil {
		return nil
	}
	return notApplied{err}
}

// IsNotApplied reports whether err says nothing was changed.
func IsNotApplied(err error) bool {
	var na notApplied
	return errors.As(err, &na)
}

// Step journals the change's intent, makes it, records the outcome (done,
// failed, or unknown), and keeps how to take it back for Revert. It
// returns Do's error, or the journal's: a change whose intent cannot be
// journaled is not made.
func (f *Fault) Step(ctx context.Context, s Step) error {
	id := f.NextID()
	if err := f.Journal.Append(journal.Event{Type: journal.Intent, ID: id, Name: f.Spec.Name, Undo: s.Undo, Message: s.What}); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	st := &step{id: id, what: s.What, undo: s.Undo, revert: s.Revert}
	err := s.Do(ctx)
	switch {
	case errors.Is(err, ErrNoChange):
		return f.appendAll(journal.Event{Type: journal.Done, ID: id}, journal.Event{Type: journal.Undone, ID: id, Message: ErrNoChange.Error()})
	case err != nil && IsNotApplied(err):
		if jerr := f.Journal.Append(journal.Event{Type: journal.Failed, ID: id, Message: err.Error()}); jerr != nil {
			return errors.Join(err, fmt.Errorf("journal: %w", jerr))
		}
		return err
	case err != nil:
		f.keep(st)
		if jerr := f.Journal.Append(journal.Event{Type: journal.Unknown, ID: id, Message: err.Error()}); jerr != nil {
			return errors.Join(err, fmt.Errorf("journal: %w", jerr))
		}
		return err
	}
	if s.Undo == nil && s.Revert == nil { // nothing to take back
		return f.appendAll(journal.Event{Type: journal.Done, ID: id}, journal.Event{Type: journal.Undone, ID: id, Message: "nothing to put back"})
	}
	f.keep(st)
	return f.appendAll(journal.Event{Type: journal.Done, ID: id})
}

func (f *Fault) keep(s *step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps = append(f.steps, s)
}

func (f *Fault) appendAll(events ...journal.Event) error {
	for _, e := range events {
		if err := f.Journal.Append(e); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	return nil
}

// AtRevert has fn run once Revert has taken back the steps (to stop a
// watcher and record what it saw, say); it runs even if nothing was kept.
func (f *Fault) AtRevert(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = append(f.after, fn)
}

// Revert takes back every step kept, latest first, journaling each as
// undone (or its failure), and forgets them: a second Revert does nothing.
// It returns every failure, joined.
func (f *Fault) Revert(ctx context.Context) error {
	f.mu.Lock()
	steps, after := f.steps, f.after
	f.steps, f.after = nil, nil
	f.mu.Unlock()
	defer func() {
		for _, fn := range after {
			fn()
		}
	}()
	var errs []string
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		var err error
		switch {
		case s.revert != nil:
			err = s.revert(ctx)
		case s.undo != nil && f.Registry != nil:
			_, err = f.Registry.Undo(ctx, s.undo)
		case s.undo != nil:
			err = fmt.Errorf("no registry to undo %s", s.undo.Kind)
		}
		if err != nil {
			errs = append(errs, err.Error())
			if jerr := f.Journal.Append(journal.Event{Type: journal.Note, ID: s.id, Message: "revert failed: " + err.Error()}); jerr != nil {
				errs = append(errs, "journal: "+jerr.Error())
			}
			continue
		}
		if jerr := f.Journal.Append(journal.Event{Type: journal.Undone, ID: s.id}); jerr != nil {
			errs = append(errs, "journal: "+jerr.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
