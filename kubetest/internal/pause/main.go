// Command pause is the sandbox ("pause") container of the real-node test
// cluster: it holds a pod's namespaces open, reaps the children it inherits
// as the pod's first process, and exits 0 on SIGINT or SIGTERM. kubetest
// builds it static and imports it as the node's pinned sandbox image, since
// no image registry is reachable.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
