// Package experiments embeds the demo shop's experiment files, so that
// 'faultline demo' runs them from the binary alone.
package experiments

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Order is the order the demo runs them in.
var Order = []string{"cache-dies", "db-primary-down", "slow-payment", "half-instances", "zone-outage"}

// Checklist are the rest of the quarterly checklist's experiments (network,
// HTTP, data, broker and resource faults), which 'faultline demo --all' runs
// after Order.
var Checklist = []string{"service-unreachable", "payment-errors", "payment-malformed", "dns-fails", "db-pool-exhausted", "disk-fills",
	"queue-down", "memory-pressure", "cpu-spike", "db-nulls", "schema-mismatch"}

// Beyond are the experiments on no checklist that 'faultline demo --all'
// runs last: db-packet-loss, a lossy network to the database, and
// error-alert, the blog's stop condition on an alert.
var Beyond = []string{"db-packet-loss", "error-alert"}

// All is every experiment of the demo, in the order --all runs them.
func All() []string { return slices.Concat(Order, Checklist, Beyond) }

// Item is one failure of the quarterly checklist and the experiment that
// covers it. Planned, when set, says why the experiment is not in Order or
// Checklist yet.
type Item struct {
	Group, Failure, Experiment, Planned string
}

// Quarterly is the checklist run every quarter: fifteen failures in four
// groups, in the order a review walks them.
var Quarterly = []Item{
	{"dependencies", "Service A can't reach service B", "service-unreachable", ""},
	{"dependencies", "External API returns 500s", "payment-errors", ""},
	{"dependencies", "External API is slow", "slow-payment", ""},
	{"dependencies", "DNS resolution fails", "dns-fails", ""},
	{"data stores", "Primary database goes down", "db-primary-down", ""},
	{"data stores", "Cache dies", "cache-dies", ""},
	{"data stores", "Message queue is unavailable", "queue-down", ""},
	{"data stores", "Connection pool fills up", "db-pool-exhausted", ""},
	{"capacity", "50 % of instances terminate", "half-instances", ""},
	{"capacity", "Memory pressure (kill -9 when OOM)", "memory-pressure", ""},
	{"capacity", "CPU spike on a dependent service", "cpu-spike", ""},
	{"capacity", "Disk fills up on a logging node", "disk-fills", ""},
	{"data integrity", "Malformed responses", "payment-malformed", ""},
	{"data integrity", "Unexpected null values in the database", "db-nulls", ""},
	{"data integrity", "Schema mismatch between services", "schema-mismatch", ""},
}

// File returns the experiment file of a name in Order.
func File(name string) ([]byte, error) { return fs.ReadFile(files, name+".yaml") }

// Path is where the file lives in the repository, for messages.
func Path(name string) string {
	return "examples/experiments/" + strings.TrimSuffix(name, ".yaml") + ".yaml"
}
