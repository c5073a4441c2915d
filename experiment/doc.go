// Package experiment reads experiment files: YAML that names a hypothesis,
// targets, traffic, steady-state checks, faults with their timing, stop
// conditions and a recovery window. Parse checks the whole file and reports
// every problem at once with its line, column and field; the result is
// what the runner plans from. The condition grammar ("latency p99 < 600ms
// for 5s") is ParseCondition.
package experiment
