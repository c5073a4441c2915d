// Package runner carries out a plan (package plan) end to end:
//
//	setup → baseline → inject → rollback → recovery → teardown
//
// It sets the targets up (package target), drives the traffic the whole
// time (package load), checks the steady state in each phase and the stop
// conditions on every tick (package probe for probes), applies faults on
// the plan's schedule (plan.Windows) through their families (a
// fault.Registry), and reverts
// every fault it applied on every way out: the end of its window, a stop
// condition, an error, a cancelled context (Ctrl-C, SIGTERM), a panic in
// any of its goroutines, or max_duration. Every change is journaled before
// it is made (fault.Step), so Recover can undo what a killed runner left;
// what only setup knows (the ports and addresses it gave the targets) is
// journaled as a "resolved" note, beside the launches' pids. A journal
// line that cannot be written is counted and makes the verdict ERROR.
//
// The runner knows phases, ticks, stop conditions and verdicts; what a
// fault or a target does is its family's and package target's. What a
// run directory holds is package record's.
package runner
