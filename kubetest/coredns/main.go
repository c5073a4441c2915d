// Module kubedns builds CoreDNS, with only the plugins a test cluster's DNS
// needs, for faultline's real-node tests: Services are answered by name
// from the API server, and nothing is forwarded off the machine (no
// forward plugin is built in). It is its own module so that the main
// module's go test ./... skips it; scripts/kubenode.sh builds it into a
// cache.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
