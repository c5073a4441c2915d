//go:build !linux

package proxy

// fineTimerSlack does nothing where threads have no timer slack to set.
func fineTimerSlack() (restore func()) { return func() {} }
