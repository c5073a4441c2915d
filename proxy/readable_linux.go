package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// readable returns how many bytes a socket has received and not yet been
// read, or 0 if that cannot be told.
func readable(rc syscall.RawConn) int {
	n := 0
	_ = rc.Control(func(fd uintptr) {
		v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err == nil {
			n = v
		}
	})
	return n
}
