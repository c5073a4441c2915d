// Package target is what an experiment's faults act on, as a run holds
// it: processes (launched by the run, each instance on a port of its own,
// or found already running), proxies (embedded in the run, or a proxy of
// a remote Toxiproxy-compatible API), DNS resolvers the run starts, and
// the pods of a Kubernetes cluster. A Set sets them all up in the order
// that lets one name another's address ({NAME.addr}), launches what the
// run owns, and tears it down; fault families take the targets they act
// on from it. The runner knows none of these kinds; this package does.
package target
