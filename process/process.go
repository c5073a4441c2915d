package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Proc is a process as the kernel knows it: pid and start time (clock
// ticks since boot, field 22 of /proc/PID/stat), so that a recycled pid is
// never taken for the process that had it.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// ErrGone means the process exited, or its pid now belongs to another.
var ErrGone = errors.New("process is gone")

// stat reads a process's parent, state and start time from /proc/PID/stat.
func stat(pid int) (ppid int, state byte, start uint64, err error) {
	ppid, state, _, start, err = statFlags(pid)
	return ppid, state, start, err
}

// statFlags is stat with the kernel's flags of the process (field 9).
func statFlags(pid int) (ppid int, state byte, flags uint64, start uint64, err error) {
	ppid, state, _, flags, start, err = statAll(pid)
	return ppid, state, flags, start, err
}

// statAll reads parent, state, process group, flags and start time.
func statAll(pid int) (ppid int, state byte, pgrp int, flags uint64, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, 0, 0, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	// The command name is in parentheses and may hold anything: fields
	// are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, 0, 0, fmt.Errorf("pid %d: unreadable stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, 0, 0, 0, fmt.Errorf("pid %d: short stat", pid)
	}
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[2] field 5 (pgrp),
	// f[6] field 9 (flags), f[19] field 22 (starttime).
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	flags, _ = strconv.ParseUint(f[6], 10, 64)
	start, err = strconv.ParseUint(f[19], 10, 64)
	return ppid, f[0][0], pgrp, flags, start, err
}

// Identify returns pid with its start time.
func Identify(pid int) (Proc, error) {
	_, _, start, err := stat(pid)
	return Proc{PID: pid, Start: start}, err
}

// State returns a process's state letter (R, S, T for stopped, Z, ...),
// checking that it is still the same process.
func State(p Proc) (byte, error) {
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
func Alive(p Proc) bool {
	st, err := State(p)
	return err == nil && st != 'Z' && st != 'X'
}

// Tree returns pid and all its descendants, parents before children.
func Tree(pid int) ([]Proc, error) {
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
	out := []Proc{root}
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
func Signal(procs []Proc, sig syscall.Signal) error {
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

// ErrRefused means a process is never a target: init, a kernel thread,
// faultline itself or one of its ancestors (stopping those would stop the
// run that has to roll back), or another user's process that was not
// allowed explicitly.
var ErrRefused = errors.New("not a process faultline may act on")

// pfKthread is PF_KTHREAD in /proc/PID/stat's flags: a kernel thread.
const pfKthread = 0x00200000

// Check reports, as an error wrapping ErrRefused with the reason, whether
// pid is a process faultline must not act on: pid 1 (the init of this PID
// namespace: the host's, unless faultline runs in a container), a kernel
// thread, faultline itself or one of its ancestors, or a process of
// another user than faultline's unless allowOtherUsers. A process that is
// gone is ErrGone.
func Check(pid int, allowOtherUsers bool) error {
	_, _, flags, _, err := statFlags(pid)
	if err != nil {
		return err
	}
	switch {
	case pid == 1:
		return refused(pid, "the system's init")
	case flags&pfKthread != 0 || pid == 2:
		return refused(pid, "a kernel thread")
	case pid == os.Getpid():
		return refused(pid, "faultline itself")
	}
	for p := os.Getppid(); p > 1; {
		if p == pid {
			return refused(pid, "an ancestor of this faultline (stopping it would stop the run that has to roll back)")
		}
		ppid, _, _, err := stat(p)
		if err != nil {
			break
		}
		p = ppid
	}
	if !allowOtherUsers {
		uid, err := UID(pid)
		if err != nil {
			return err
		}
		if me := os.Getuid(); uid != me {
			return refused(pid, fmt.Sprintf("belongs to %s, not to %s, who runs faultline (allow_other_users: true on the target allows it)", userName(uid), userName(me)))
		}
	}
	return nil
}

// RefusedError is a process Check refuses, and why.
type RefusedError struct {
	PID     int
	Command string
	Why     string
}

func (e *RefusedError) Error() string { return fmt.Sprintf("pid %d (%s): %s", e.PID, e.Command, e.Why) }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func refused(pid int, why string) error {
	return &RefusedError{PID: pid, Command: Command(pid), Why: why}
}

// UID returns the real user id of a process.
func UID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("pid %d: no Uid in its status", pid)
}

// Command returns a process's command line, shortened for messages, or
// its name in brackets for a kernel thread ("[kthreadd]").
func Command(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && len(b) > 0 {
		cmd := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		if len(cmd) > 80 {
			cmd = cmd[:80] + "…"
		}
		return cmd
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
		return "[" + strings.TrimSpace(string(comm)) + "]"
	}
	return "?"
}

// userName is a user's name, or the number if it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return "user " + u.Username
	}
	return fmt.Sprintf("uid %d", uid)
}

// Selector names processes that already run: exactly one of PID, PIDFile
// (the pid on its first line) or Match (a regexp on the command line, its
// arguments joined by spaces).
type Selector struct {
	PID     int
	PIDFile string
	Match   *regexp.Regexp
	// AllowOtherUsers lets Find return processes of other users than
	// faultline's (a database server's own user, say).
	AllowOtherUsers bool
}

// Find returns the pids a selector names, ascending. A Match leaves out
// faultline itself and its ancestors; a process Check refuses makes it an
// error that wraps ErrRefused and names every such process, and none is
// returned: a selection that reaches init, a kernel thread or its own
// runner is a mistake to fix, not one to work around.
func Find(s Selector) ([]int, error) {
	var pids []int
	switch {
	case s.PID != 0:
		pids = []int{s.PID}
	case s.PIDFile != "":
		pid, err := ReadPIDFile(s.PIDFile)
		if err != nil {
			return nil, err
		}
		pids = []int{pid}
	case s.Match != nil:
		var err error
		if pids, err = Match(s.Match); err != nil {
			return nil, err
		}
		if len(pids) == 0 {
			return nil, fmt.Errorf("no process matches %q", s.Match)
		}
	default:
		return nil, errors.New("no pid, pidfile or match")
	}
	var refusals []error
	for _, pid := range pids {
		if err := Check(pid, s.AllowOtherUsers); err != nil {
			refusals = append(refusals, err)
		}
	}
	switch n := len(refusals); {
	case n == 0:
		return pids, nil
	case n > 5:
		refusals = append(refusals[:5], fmt.Errorf("and %d more", n-5))
	}
	return nil, fmt.Errorf("it reaches processes faultline never acts on:\n%w", errors.Join(refusals...))
}

// SignalGroup sends sig to the process group that leader leads, also when
// the leader is gone and its children live on (a shell's background jobs,
// orphaned to init): it returns how many processes it signalled. The
// group is only touched while it is leader's: a pid is not given to a new
// process while a group still bears it, so when another process holds the
// leader's pid now, the group is someone else's and nothing is signalled.
func SignalGroup(leader Proc, sig syscall.Signal) (int, error) {
	if _, err := State(leader); err == nil {
		members := groupMembers(leader.PID)
		if err := syscall.Kill(-leader.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return 0, fmt.Errorf("process group %d: %s: %w", leader.PID, sig, err)
		}
		return len(members), nil
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", leader.PID)); err == nil {
		return 0, nil // the pid belongs to another process: so does any group of that number
	}
	n := 0
	var errs []error
	for _, pid := range groupMembers(leader.PID) {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("pid %d: %s: %w", pid, sig, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// groupMembers lists the processes whose process group is pgrp.
func groupMembers(pgrp int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, _, g, _, _, err := statAll(pid); err == nil && g == pgrp {
			out = append(out, pid)
		}
	}
	return out
}
