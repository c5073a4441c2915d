// Package plan turns an experiment file, read and checked, into what a
// run will do: an immutable Plan with the faults' schedule and the seed
// fixed, which --dry-run describes (Describe) and the runner executes.
// Data flows one way: experiment (the file) → plan → runner.
package plan
