package builtin

import (
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/probe"
)

// Prober returns a Prober with every built-in kind of probe, ready_pods
// reaching clusters through package kube.
func Prober() *probe.Prober {
	return probe.New(probe.Config{Cluster: func(kubeconfig string) (probe.Cluster, error) { return kube.Open(kubeconfig) }})
}
