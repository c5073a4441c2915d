package cli

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages gives back the pages of faultline's own binary that
// start-up mapped and a long-running server does not use. The binary
// holds every command (Kubernetes, the report, the demo shop); package
// initialization touches a little of each, and the kernel maps up to
// 64 KiB around every page touched, so an idle 'faultline serve' showed
// ~37 MiB of the binary resident. Dropping the mappings of its read-only
// segments (code, constants) costs nothing: the pages stay in the page
// cache, shared and reclaimable, and those the server uses come back on
// first use as minor faults. Writable segments are never touched.
func releaseStartupPages() {
	debug.FreeOSMemory() // and the heap that start-up used and let go
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-0243b000 r-xp 00000000 fe:00 9986476   /path/to/faultline
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		from, to, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(from, 16, 64)
		end, err2 := strconv.ParseUint(to, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// MADV_RANDOM: no read-ahead around later faults; then drop them.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_RANDOM)
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
	}
}
