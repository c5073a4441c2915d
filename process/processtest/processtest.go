// Package processtest starts real processes for tests that stop, kill and
// find them.
package processtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/process"
)

// Sleepers starts a shell with two sleeping children, in a process group
// of its own, and waits until both children are there and have exec'd. It returns the
// shell and a marker that matches the shell's command line only. The whole
// group is resumed and killed when the test ends.
func Sleepers(tb testing.TB) (*exec.Cmd, string) {
	tb.Helper()
	marker := fmt.Sprintf("faultline-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := exec.Command("sh", "-c", "sleep 300 & sleep 301 & wait", marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Until they exec, the children are copies of the shell and name
		// marker too: wait until the shell alone does.
		tree, err := process.Tree(cmd.Process.Pid)
		if err == nil && len(tree) == 3 {
			if pids, err := process.Match(regexp.MustCompile(regexp.QuoteMeta(marker))); err == nil && len(pids) == 1 {
				return cmd, marker
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("processtest: the shell's children did not show up: %v %v", tree, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stopped reports whether pid and all its descendants are stopped (state T).
func Stopped(tb testing.TB, pid int) bool {
	tb.Helper()
	tree, err := process.Tree(pid)
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range tree {
		if st, err := process.State(p); err == nil && st != 'T' {
			return false
		}
	}
	return len(tree) > 0
}

// WaitFor polls cond until it holds, failing the test after 30 s.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("processtest: timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var faultline struct {
	once sync.Once
	path string
	err  error
}

// Faultline builds the faultline binary once per test binary, for the
// tests that run it, and returns its path (in a temporary directory the
// test binary leaves, as go test's own are).
func Faultline(tb testing.TB) string {
	tb.Helper()
	faultline.once.Do(func() {
		dir, err := os.MkdirTemp("", "faultline-test-bin")
		if err != nil {
			faultline.err = err
			return
		}
		faultline.path = filepath.Join(dir, "faultline")
		if out, err := exec.Command("go", "build", "-o", faultline.path, "github.com/faultline/faultline/cmd/faultline").CombinedOutput(); err != nil {
			faultline.err = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if faultline.err != nil {
		tb.Fatal(faultline.err)
	}
	return faultline.path
}
