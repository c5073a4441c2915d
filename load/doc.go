// Package load drives HTTP traffic at a constant rate (an open model: a
// slow system cannot slow the load down and hide its own latency) and
// measures it in HDR histograms. vegeta paces the requests and runs the
// workers; each request goes out on a kept-alive connection of a small
// transport of this package, as bytes rendered once by net/http's request
// writer, and its answer is read by net/http's response reader (net/http's
// own Transport and Client cost the load generator about twice the CPU per
// request: see bench/results/load.md). Latency is taken
// from each request's intended start, so queueing in the load generator
// counts against the system (no coordinated omission). Any Go program can
// use it; it knows nothing of experiments.
package load
