package load

import "testing"

// UseGoroutineWorkers makes the runs of t send every request from
// goroutine workers, as those the event loops do not take are, until t
// ends. Tests that use it do not run in parallel.
func UseGoroutineWorkers(t testing.TB) {
	goroutinesOnly = true
	t.Cleanup(func() { goroutinesOnly = false })
}
