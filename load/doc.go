// Package load drives HTTP traffic at a constant rate (an open model: a
// slow system cannot slow the load down and hide its own latency) and
// measures it in HDR histograms. Request n of a run is due n/rate after
// its start; a pool of workers of its own sends each when due, and latency
// is taken from that due time, so queueing in the load generator counts
// against the system (no coordinated omission). The pool grows only while
// more workers raise the rate: on few cores, workers past that only cost
// each request more.
//
// Each request goes out on a kept-alive connection of a small transport of
// this package, as bytes rendered once by net/http's request writer, and
// its answer is read by net/http's response reader (net/http's own
// Transport and Client cost the load generator about twice the CPU per
// request: see bench/results/load.md). Any Go program can use it; it
// knows nothing of experiments.
package load
