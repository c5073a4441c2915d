package stress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrRefused marks a stress refused as asked, before it started
// (errors.Is); the error's text says why.
var ErrRefused = errors.New("refused")

type refused struct{ msg string }

func (e refused) Error() string        { return e.msg }
func (e refused) Is(target error) bool { return target == ErrRefused }

func refusef(format string, args ...any) error { return refused{fmt.Sprintf(format, args...)} }

// FillConfig says how much of a file system to fill.
type FillConfig struct {
	// Dir is a directory on the file system to fill.
	Dir string
	// File is the fill file's path; default Dir/.faultline-fill-PID. It is
	// created anew and removed when the fill ends.
	File string
	// Exactly one of: leave Free bytes free, leave FreePercent % free, or
	// write Fill bytes.
	Free        int64
	FreePercent float64
	Fill        int64
	// AllowRoot permits filling the file system mounted on /.
	AllowRoot bool
}

// usage returns a file system's free and total bytes.
func usage(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// Magic numbers of file systems that live in memory (statfs's f_type).
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// inMemory reports whether dir's file system keeps its files in memory
// (tmpfs, ramfs: /dev/shm, /run, a tmpfs /tmp): filling it takes memory.
func inMemory(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == tmpfsMagic || st.Type == ramfsMagic
}

// onRoot reports whether dir (through any symbolic link or bind mount) is
// on the file system mounted on /.
func onRoot(dir string) bool {
	var d, root syscall.Stat_t
	if syscall.Stat(dir, &d) != nil || syscall.Stat("/", &root) != nil {
		return mountPoint(dir) == "/"
	}
	return d.Dev == root.Dev
}

// sameFileSystem reports whether the open file f is on dir's file system.
func sameFileSystem(dir string, f *os.File) (bool, error) {
	var d, fs syscall.Stat_t
	if err := syscall.Stat(dir, &d); err != nil {
		return false, err
	}
	if err := syscall.Fstat(int(f.Fd()), &fs); err != nil {
		return false, err
	}
	return d.Dev == fs.Dev, nil
}

// mountPoint returns the mount point of the file system holding path.
func mountPoint(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "/"
	}
	best := "/"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := strings.ReplaceAll(f[1], `\040`, " ")
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// Fill writes a file until the file system of cfg.Dir has only the free
// space asked for (or cfg.Fill bytes are written), holds it until ctx
// ends, then removes it. ready is called once the file system is full.
func Fill(ctx context.Context, cfg FillConfig, ready func()) (Result, error) {
	set := 0
	for _, v := range []bool{cfg.Free > 0, cfg.FreePercent > 0, cfg.Fill > 0} {
		if v {
			set++
		}
	}
	if set != 1 {
		return Result{}, refusef("disk: give exactly one of free, free percent or fill")
	}
	if cfg.FreePercent >= 100 {
		return Result{}, refusef("disk: free percent must be below 100")
	}
	if onRoot(cfg.Dir) && !cfg.AllowRoot {
		return Result{}, refusef("disk: %s is on the root file system (/): filling it can stop the whole machine; fill a dedicated mount, or allow it explicitly (--allow-root; allow_root: true in an experiment)", cfg.Dir)
	}
	free, total, err := usage(cfg.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("disk: %w", err)
	}
	want := cfg.Fill
	switch {
	case cfg.Free > 0:
		want = free - cfg.Free
	case cfg.FreePercent > 0:
		want = free - int64(float64(total)*cfg.FreePercent/100)
	}
	if want <= 0 {
		return Result{}, refusef("disk: %s has %s free already: nothing to fill", cfg.Dir, FormatSize(free))
	}
	if inMemory(cfg.Dir) {
		// What a tmpfs holds is memory: the fill is a memory stress.
		if avail, what := memAvailable(); avail > 0 && want > avail {
			return Result{}, refusef("disk: %s is in memory (tmpfs): filling %s of it takes that much memory, more than the %s %s; mount a small tmpfs for the test (mount -t tmpfs -o size=64m tmpfs DIR) or fill less", cfg.Dir, FormatSize(want), FormatSize(avail), what)
		}
	}
	if cfg.File == "" {
		cfg.File = filepath.Join(cfg.Dir, fmt.Sprintf(".faultline-fill-%d", os.Getpid()))
	}
	f, err := os.OpenFile(cfg.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Result{}, fmt.Errorf("disk: %w", err)
	}
	defer os.Remove(cfg.File)
	defer f.Close()
	// The file fills its own file system: it must be the one measured (and
	// checked for /) above.
	if same, err := sameFileSystem(cfg.Dir, f); err != nil || !same {
		return Result{}, refusef("disk: the fill file %s is not on the file system of %s: give a file in it", cfg.File, cfg.Dir)
	}
	start := time.Now()
	buf := make([]byte, 1<<20)
	var written int64
	for written < want && ctx.Err() == nil {
		n, err := f.Write(buf[:min(int64(len(buf)), want-written)])
		written += int64(n)
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break // full: as full as it gets
			}
			return Result{Kind: "disk", Bytes: written, File: cfg.File}, fmt.Errorf("disk: %w", err)
		}
	}
	_ = f.Sync()
	free, _, _ = usage(cfg.Dir)
	res := Result{Kind: "disk", Bytes: written, Free: free, File: cfg.File}
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	res.Held = time.Since(start).Seconds()
	return res, nil
}
