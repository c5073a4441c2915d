// Package kubernetes holds the demo shop's manifests for a Kubernetes
// cluster (shop.yaml), the experiments that run against it, and their
// test on a real node (package kubetest): each experiment fails on the
// fragile build and passes on the resilient one.
package kubernetes
