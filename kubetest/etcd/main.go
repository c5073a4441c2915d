// Command etcd is etcd's server, built from the Go module proxy for the
// tests that need a real Kubernetes control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
