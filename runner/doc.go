// Package runner carries out one experiment end to end:
//
//	setup → baseline → inject → rollback → recovery → teardown
//
// It launches what the experiment owns (processes, embedded proxies),
// drives the traffic the whole time, checks the steady state in each phase
// and the stop conditions on every tick, applies faults on their schedule,
// and reverts every fault it applied on every way out: the end of its
// window, a stop condition, an error, a cancelled context (Ctrl-C,
// SIGTERM) or a panic. Each change is written to the run's journal before
// it is made, so faultline recover can undo what a killed runner left.
//
// The runner knows phases; what a fault does is behind the fault type's
// inject and revert.
package runner
