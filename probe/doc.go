// Package probe checks a system from outside, once: an HTTP request that
// must answer a status (and a body), a TCP connect, a command that must
// exit as expected, a Prometheus query compared with a value, the share of
// Kubernetes pods that are Ready. A probe gives a Result and an error,
// never a bare bool: why it failed is what a person reads.
//
// Specs come from a file (Decode reads one from YAML, with every problem
// at its place); a Prober runs them, holding the clients they share (an
// HTTP client, one Kubernetes client per cluster) as a value, not globals.
// Kinds are a table: a Prober may be given more (Register).
package probe
