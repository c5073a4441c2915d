package fault

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
)

// Family injects one kind of fault: it makes the fault's changes through
// f.Step (which journals them and keeps how to take them back) and
// records what it hit and what shows it took effect. It knows nothing of
// phases; the run decides when to inject and when to Revert.
type Family interface {
	Inject(ctx context.Context, f *Fault) error
}

// FamilyFunc is a Family as a function.
type FamilyFunc func(ctx context.Context, f *Fault) error

// Inject calls fn.
func (fn FamilyFunc) Inject(ctx context.Context, f *Fault) error { return fn(ctx, f) }

// UndoFunc takes back, with nothing but its journal record, a change that
// a run made and did not revert (its runner was killed); it says what it
// did. It must be idempotent: what is gone already is success.
type UndoFunc func(ctx context.Context, u *journal.Undo) (string, error)

// Registry holds the fault families a run can inject, by the Go type of
// the action they do, and the undos recover can replay, by undo kind. It
// is a value: build one, register into it, give it to the run and to
// recover.
type Registry struct {
	families map[reflect.Type]Family
	undos    map[string]UndoFunc
	actions  map[string]experiment.ActionDecoder
	docs     map[string]any
	inPlace  map[string]InPlaceFunc
}

// InPlaceFunc says, for 'faultline status', what a journaled change of
// its undo kind has put in place ("toxic T on proxy P at API").
type InPlaceFunc func(e journal.Event) string

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{families: map[reflect.Type]Family{}, undos: map[string]UndoFunc{},
		actions: map[string]experiment.ActionDecoder{}, docs: map[string]any{}, inPlace: map[string]InPlaceFunc{}}
}

// Register makes fam inject the faults whose action is of type A.
func Register[A experiment.Action](r *Registry, fam Family) {
	r.families[reflect.TypeFor[A]()] = fam
}

// RegisterFunc makes inject the family of action type A, with the action
// given typed.
func RegisterFunc[A experiment.Action](r *Registry, inject func(ctx context.Context, f *Fault, a A) error) {
	Register[A](r, FamilyFunc(func(ctx context.Context, f *Fault) error { return inject(ctx, f, f.Spec.Action.(A)) }))
}

// RegisterAction makes an action key of experiment files (a family's
// own, "feature_flag: {...}") known to the files this registry reads:
// decode reads its value, doc is its shape for the JSON Schema (a Go
// struct value with json tags).
func (r *Registry) RegisterAction(key string, decode experiment.ActionDecoder, doc any) {
	r.actions[key] = decode
	r.docs[key] = doc
}

// RegisterUndo makes recover replay undo records of kind with fn.
func (r *Registry) RegisterUndo(kind string, fn UndoFunc) { r.undos[kind] = fn }

// RegisterInPlace makes status say what a change whose undo is of kind
// has put in place with fn; without one, status says the step's message.
func (r *Registry) RegisterInPlace(kind string, fn InPlaceFunc) { r.inPlace[kind] = fn }

// InPlace says what a journaled change (an event with an undo) has put in
// place: its kind's InPlaceFunc, else what the step said, else the kind.
func (r *Registry) InPlace(e journal.Event) string {
	if e.Undo == nil {
		return e.Message
	}
	if fn := r.inPlace[e.Undo.Kind]; fn != nil {
		return fn(e)
	}
	if e.Message != "" {
		return e.Message
	}
	return e.Undo.Kind
}

// Family returns the family of an action, nil if none does it.
func (r *Registry) Family(a experiment.Action) Family {
	return r.families[reflect.TypeOf(a)]
}

// Undo replays one undo record.
func (r *Registry) Undo(ctx context.Context, u *journal.Undo) (string, error) {
	fn, ok := r.undos[u.Kind]
	if !ok {
		return "", fmt.Errorf("no undo of kind %q is known here (a family registered by another program?)", u.Kind)
	}
	return fn(ctx, u)
}

// Actions returns the action keys registered, with their decoders, for
// experiment.Options.
func (r *Registry) Actions() map[string]experiment.ActionDecoder { return maps.Clone(r.actions) }

// ActionDocs returns the registered action keys' shapes, for the schema.
func (r *Registry) ActionDocs() map[string]any { return maps.Clone(r.docs) }

// UndoKinds lists the undo kinds registered, sorted.
func (r *Registry) UndoKinds() []string { return slices.Sorted(maps.Keys(r.undos)) }

// ActionTypes lists the Go types of the actions a family is registered
// for.
func (r *Registry) ActionTypes() []reflect.Type {
	out := slices.Collect(maps.Keys(r.families))
	slices.SortFunc(out, func(a, b reflect.Type) int { return strings.Compare(a.String(), b.String()) })
	return out
}
