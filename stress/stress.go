// Package stress exhausts a machine's resources on purpose, for as long as
// its context lives: CPU (workers at a load), memory (allocated and
// touched), disk (a file system filled to a given free space) and
// connections (TCP connections, or PostgreSQL sessions, held open). Each
// undoes itself when the context ends: workers stop, memory is released,
// the fill file is removed, connections are closed. Each reports what it
// measured, as evidence that it took effect.
package stress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is what a stress measured while it held.
type Result struct {
	Kind string `json:"kind"`
	// CPU is the CPU used, in cores (1.0 = one core busy), over the hold.
	CPU float64 `json:"cpu_cores,omitempty"`
	// RSS is the resident memory, in bytes, once allocated.
	RSS int64 `json:"rss_bytes,omitempty"`
	// Bytes written to the fill file; Free is what was left free.
	Bytes int64  `json:"bytes_written,omitempty"`
	Free  int64  `json:"free_bytes,omitempty"`
	File  string `json:"file,omitempty"`
	// Conns is the number of connections held.
	Conns int `json:"connections,omitempty"`
	// Held is how long it held, in seconds.
	Held float64 `json:"held_seconds"`
}

// String says what a stress measured, for people and as evidence.
func (r Result) String() string {
	switch r.Kind {
	case "cpu":
		return fmt.Sprintf("measured %.2f cores busy over %.1f s", r.CPU, r.Held)
	case "memory":
		return fmt.Sprintf("measured %s resident", FormatSize(r.RSS))
	case "disk":
		return fmt.Sprintf("wrote %s, leaving %s free", FormatSize(r.Bytes), FormatSize(r.Free))
	case "connections":
		return fmt.Sprintf("held %d connections for %.1f s", r.Conns, r.Held)
	}
	return r.Kind
}

// ParseSize reads sizes such as 512MiB, 1GiB, 100MB, 4096 (bytes).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f >= 0) || f*float64(mult) > 1<<62 { // !(f >= 0): NaN too
		return 0, fmt.Errorf("size %q: want a number with an optional unit, e.g. 512MiB, 1GiB, 100MB", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatSize writes n bytes for people.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPU keeps workers busy at load percent (1-100) each until ctx ends.
// ready is called once the workers run.
func CPU(ctx context.Context, workers, load int, ready func()) (Result, error) {
	if workers < 1 || load < 1 || load > 100 {
		return Result{}, errors.New("cpu: want workers >= 1 and load from 1 to 100")
	}
	const period = 100 * time.Millisecond
	busy := period * time.Duration(load) / 100
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			x := uint64(1)
			for ctx.Err() == nil {
				t0 := time.Now()
				for time.Since(t0) < busy {
					for range 1000 {
						x = x*6364136223846793005 + 1442695040888963407
					}
				}
				if rest := period - time.Since(t0); rest > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(rest):
					}
				}
			}
			sink.Store(x)
		})
	}
	if ready != nil {
		ready()
	}
	wg.Wait()
	held := time.Since(start)
	return Result{Kind: "cpu", CPU: (cpuTime() - cpu0).Seconds() / held.Seconds(), Held: held.Seconds()}, nil
}

var sink atomicUint64

// rss is the process's resident memory in bytes (VmRSS).
func rss() int64 { return procKB("/proc/self/status", "VmRSS:") }

// memTotal is the machine's memory in bytes, 0 if unknown.
func memTotal() int64 { return procKB("/proc/meminfo", "MemTotal:") }

// memAvailable is the memory that can be taken now without swapping or
// the OOM killer stepping in, and what bounds it: the kernel's
// MemAvailable, or this process's cgroup limit less its usage when that
// is less. 0 if unknown.
func memAvailable() (int64, string) {
	avail, what := procKB("/proc/meminfo", "MemAvailable:"), "available on this machine"
	if left, ok := cgroupLeft(); ok && (avail == 0 || left < avail) {
		avail, what = left, "left under this process's cgroup memory limit"
	}
	return avail, what
}

// cgroupLeft is the cgroup memory limit less its usage, for this
// process's cgroup (v2, else v1's memory controller); false when there is
// no limit.
func cgroupLeft() (int64, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var limit, usage string
		switch {
		case f[0] == "0" && f[1] == "":
			dir := filepath.Join("/sys/fs/cgroup", f[2])
			if _, err := os.Stat(filepath.Join(dir, "memory.max")); err != nil {
				dir = filepath.Join("/sys/fs/cgroup/unified", f[2])
			}
			limit, usage = filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.current")
		case slices.Contains(strings.Split(f[1], ","), "memory"):
			dir := filepath.Join("/sys/fs/cgroup/memory", f[2])
			limit, usage = filepath.Join(dir, "memory.limit_in_bytes"), filepath.Join(dir, "memory.usage_in_bytes")
		default:
			continue
		}
		l, err1 := readInt(limit)
		u, err2 := readInt(usage)
		if err1 == nil && err2 == nil && l > 0 && l < 1<<60 { // "max" and v1's huge number mean none
			return max(l-u, 0), true
		}
	}
	return 0, false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// procKB reads a "KEY: N kB" line of a /proc file as bytes, 0 if absent.
func procKB(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(v); len(f) >= 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// Memory allocates size bytes and writes every page (so that they are
// resident, not just reserved), at rate bytes a second (0: at once), then
// holds them until ctx ends. ready is called once all is allocated.
func Memory(ctx context.Context, size, rate int64, ready func()) (Result, error) {
	if size <= 0 {
		return Result{}, errors.New("memory: want a size > 0")
	}
	if total := memTotal(); total > 0 && size > total {
		return Result{}, refusef("memory: %s is more than this machine has (%s)", FormatSize(size), FormatSize(total))
	}
	if avail, what := memAvailable(); avail > 0 && size > avail {
		return Result{}, refusef("memory: %s is more than the %s %s: the machine would swap or its OOM killer would pick a victim other than this stress; ask for less", FormatSize(size), FormatSize(avail), what)
	}
	const chunk = 16 << 20
	start := time.Now()
	var blocks [][]byte
	for got := int64(0); got < size; {
		n := min(chunk, size-got)
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		blocks = append(blocks, b)
		got += n
		if rate > 0 {
			due := start.Add(time.Duration(float64(got) / float64(rate) * float64(time.Second)))
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(due)):
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	res := Result{Kind: "memory", RSS: rss()}
	if ready != nil && ctx.Err() == nil { // ended before all was taken: not ready
		ready()
	}
	<-ctx.Done()
	runtime.KeepAlive(blocks)
	res.Held = time.Since(start).Seconds()
	return res, nil
}
