package proxy

import "golang.org/x/sys/unix"

// fineTimerSlack sets the calling thread's timer slack to 1 ns and returns
// the function that puts it back; the caller has locked the thread.
func fineTimerSlack() (restore func()) {
	slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || slack <= 1 {
		return func() {}
	}
	if unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) != nil {
		return func() {}
	}
	return func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(slack), 0, 0, 0) }
}
