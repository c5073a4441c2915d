package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/faultline/faultline/journal"
)

// ErrGone means the process exited, or its pid now belongs to another.
var ErrGone = errors.New("process is gone")

// stat reads a process's parent, state and start time from /proc/PID/stat.
func stat(pid int) (ppid int, state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	// The command name is in parentheses and may hold anything: fields
	// are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("pid %d: unreadable stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, 0, fmt.Errorf("pid %d: short stat", pid)
	}
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	ppid, _ = strconv.Atoi(f[1])
	start, err = strconv.ParseUint(f[19], 10, 64)
	return ppid, f[0][0], start, err
}

// Identify returns pid with its start time.
func Identify(pid int) (journal.Proc, error) {
	_, _, start, err := stat(pid)
	return journal.Proc{PID: pid, Start: start}, err
}

// State returns a process's state letter (R, S, T for stopped, Z, ...),
// checking that it is still the same process.
func State(p journal.Proc) (byte, error) {
	_, st, start, err := stat(p.PID)
	if err != nil {
		return 0, err
	}
	if start != p.Start {
		return 0, fmt.Errorf("pid %d: %w (started at %d, not %d)", p.PID, ErrGone, start, p.Start)
	}
	return st, nil
}

// Alive reports whether p still runs: it exists, is the same process, and
// is not a zombie waiting for its parent (a killed runner its shell has not
// reaped yet is gone for every purpose here).
func Alive(p journal.Proc) bool {
	st, err := State(p)
	return err == nil && st != 'Z' && st != 'X'
}

// Tree returns pid and all its descendants, parents before children.
func Tree(pid int) ([]journal.Proc, error) {
	root, err := Identify(pid)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, err := stat(p); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	out := []journal.Proc{root}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].PID] {
			if p, err := Identify(c); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Signal sends sig to each process whose start time still matches. It
// returns an error naming the processes it could not signal (ErrGone for
// those that are no longer there); the others are signalled all the same.
func Signal(procs []journal.Proc, sig syscall.Signal) error {
	var errs []error
	for _, p := range procs {
		if _, err := State(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := syscall.Kill(p.PID, sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				err = ErrGone
			}
			errs = append(errs, fmt.Errorf("pid %d: %s: %w", p.PID, sig, err))
		}
	}
	return errors.Join(errs...)
}

// IgnoreGone drops from an error of Signal the processes that are gone: a
// process that no longer exists is neither stopped nor running.
func IgnoreGone(err error) error {
	if err == nil {
		return nil
	}
	var left []error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if !errors.Is(e, ErrGone) {
			left = append(left, e)
		}
	}
	return errors.Join(left...)
}

// Match returns the pids, ascending, whose command line (arguments joined
// by spaces) matches re, leaving out this process and its ancestors.
func Match(re *regexp.Regexp) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	skip := map[int]bool{}
	for p := os.Getpid(); p > 1; {
		skip[p] = true
		ppid, _, _, err := stat(p)
		if err != nil {
			break
		}
		p = ppid
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		if re.MatchString(cmd) {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReadPIDFile reads the pid on a pidfile's first line; later lines are
// ignored (PostgreSQL's postmaster.pid has its data directory, port and
// more there).
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: want a process id on the first line, got %q", path, strings.TrimSpace(first))
	}
	return pid, nil
}
