// Package fault is how a run injects faults and takes them back: the
// interface every family of faults implements, a registry that is a value
// (r := fault.NewRegistry(); builtin.Register(r)), and the one helper,
// Step, that carries the journal's protocol for every change a fault
// makes:
//
//	intent (with how to undo it) ─▶ the change ─┬─ done ─────────┐
//	                                            ├─ unknown ──────┤─▶ reverted on Revert: undone
//	                                            └─ not applied   │   (or "revert failed")
//	                                               (failed)      │
//	                                   recover, after a SIGKILL ─┘─▶ the registry's undo of its kind
//
// A change whose outcome is not known (a call that timed out or was
// interrupted in flight, a command that failed halfway) is undone as if it
// had been made; undos are idempotent for that reason. No family writes
// the journal by hand, and no journal error is dropped: a change that
// cannot be journaled is not made.
package fault
