// Package experiments embeds the demo shop's experiment files, so that
// 'faultline demo' runs them from the binary alone.
package experiments

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Order is the order the demo runs them in.
var Order = []string{"cache-dies", "db-primary-down", "slow-payment", "half-instances", "zone-outage"}

// Checklist are the experiments of the wider checklist (HTTP and data
// faults, connection-pool exhaustion), which 'faultline demo --all' runs after Order.
var Checklist = []string{"payment-errors", "payment-malformed", "dns-fails", "db-pool-exhausted", "disk-fills"}

// File returns the experiment file of a name in Order.
func File(name string) ([]byte, error) { return fs.ReadFile(files, name+".yaml") }

// Path is where the file lives in the repository, for messages.
func Path(name string) string {
	return "examples/experiments/" + strings.TrimSuffix(name, ".yaml") + ".yaml"
}
