// Package load drives HTTP traffic at a constant rate (an open model: a
// slow system cannot slow the load down and hide its own latency) and
// measures it in HDR histograms. The engine is vegeta's; latency is taken
// from each request's intended start, so queueing in the load generator
// counts against the system (no coordinated omission). Any Go program can
// use it; it knows nothing of experiments.
package load
