// Package builtin is faultline's own fault families and probes, for a
// fault registry and a prober: the proxy's toxics and down, stop and kill
// of processes, the resource stresses, DNS rules, the Kubernetes faults
// and exec. One file a family.
//
//	r := fault.NewRegistry()
//	builtin.Register(r)
package builtin
