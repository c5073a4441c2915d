package netfault

import (
	"context"
	"errors"
	"fmt"
)

// Kind says what an Op changes.
type Kind string

// The kinds of Op.
const (
	// KindBridge: the run's bridge, Op.Link, in the namespace Op.NS.
	KindBridge Kind = "bridge"
	// KindNamespace: a network namespace bound at Op.NS.Path.
	KindNamespace Kind = "namespace"
	// KindVeth: a veth pair whose host end is Op.Link, in Op.NS.
	KindVeth Kind = "veth"
	// KindTable: the run's nftables tables (inet and netdev) in Op.NS.
	KindTable Kind = "table"
	// KindChains: one fault's chains, those whose names start with
	// Op.Fault and a dot, in the run's tables in Op.NS.
	KindChains Kind = "chains"
)

// Op is one change to the kernel's network state. Its fields are all that
// Undo needs, so it is journaled, as JSON, before the change is made, and
// undone later by any process from a decoded copy.
type Op struct {
	Kind Kind   `json:"kind"`
	Run  string `json:"run"`
	// NS is where the change is made (for KindNamespace: the namespace
	// made, whose identity is known only once it exists).
	NS NS `json:"ns"`
	// Link is the interface's name, for KindBridge and KindVeth.
	Link string `json:"link,omitempty"`
	// Fault is the fault's name, for KindChains.
	Fault string `json:"fault,omitempty"`
}

func (o Op) String() string {
	switch o.Kind {
	case KindBridge, KindVeth:
		return fmt.Sprintf("%s %s of run %s", o.Kind, o.Link, o.Run)
	case KindChains:
		return fmt.Sprintf("fault %s of run %s in %s", o.Fault, o.Run, o.NS)
	}
	return fmt.Sprintf("%s of run %s at %s", o.Kind, o.Run, o.NS)
}

// Journal records op before the change it names is made; an error stops
// the change. A nil Journal records nothing.
type Journal func(op Op) error

func (j Journal) record(op Op) error {
	if j == nil {
		return nil
	}
	if err := j(op); err != nil {
		return fmt.Errorf("journal %s: %w", op, err)
	}
	return nil
}

// Undo reverts op from its fields alone. What is already gone counts as
// undone (nil), and so does a namespace whose path now names another
// namespace: Undo never acts on a namespace or an interface that is not
// the one op made. Undo the ops of a run last first (faults, tables, veths,
// namespaces, then the bridge); processes still inside a namespace keep it
// alive after its Undo, without its veth or address on the bridge.
func Undo(ctx context.Context, op Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validName(op.Run) {
		return fmt.Errorf("undo %s: invalid run id %q", op, op.Run)
	}
	var err error
	switch op.Kind {
	case KindBridge, KindVeth:
		err = deleteLink(op)
	case KindNamespace:
		err = deleteNamespace(op)
	case KindTable:
		err = deleteTables(op)
	case KindChains:
		err = deleteChains(op)
	default:
		err = fmt.Errorf("unknown kind %q", op.Kind)
	}
	if errors.Is(err, ErrGone) || errors.Is(err, ErrReplaced) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("undo %s: %w", op, err)
	}
	return nil
}
