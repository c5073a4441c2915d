//go:build !linux

package load

// loops are Linux's event loops (see loop_linux.go); elsewhere goroutine
// workers send every request.
type loops struct{}

func newLoops(*engine) *loops { return nil }
func (*loops) start()         {}
func (*loops) add(int)        {}
func (*loops) stop()          {}
func (*loops) retire(int)     {}
