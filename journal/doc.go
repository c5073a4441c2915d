// Package journal is a run's record on disk: one JSON event per line,
// each written and synced before the step it announces, so that a runner
// killed at any moment leaves enough to undo what it did. Pending returns
// what was done and not undone; faultline recover acts on it.
package journal
