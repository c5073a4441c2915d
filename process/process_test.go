package process_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/process/processtest"
)

func waitState(t *testing.T, procs []journal.Proc, want byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for {
			st, err := process.State(p)
			if err != nil {
				t.Fatal(err)
			}
			if (want == 'T') == (st == 'T') {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d state %c, want stopped=%v", p.PID, st, want == 'T')
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestStopAndResumeAWholeTree(t *testing.T) {
	cmd, _ := processtest.Sleepers(t)
	tree, err := process.Tree(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := process.Signal(tree, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, tree, 'T')
	if err := process.Signal(tree, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitState(t, tree, 'S')
}

func TestSignalSparesARecycledPid(t *testing.T) {
	cmd, _ := processtest.Sleepers(t)
	p, err := process.Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	p.Start++ // as if the pid now belonged to a process started later
	err = process.Signal([]journal.Proc{p}, syscall.SIGKILL)
	if !errors.Is(err, process.ErrGone) {
		t.Fatalf("Signal to a pid with another start time: %v, want ErrGone", err)
	}
	if _, err := process.Identify(cmd.Process.Pid); err != nil {
		t.Fatal("the process was killed though its start time did not match")
	}
}

func TestMatchFindsByCommandLine(t *testing.T) {
	cmd, _ := processtest.Sleepers(t)
	marker := cmd.Args[3]
	pids, err := process.Match(regexp.MustCompile(regexp.QuoteMeta(marker)))
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("Match(%s) = %v, want [%d]", marker, pids, cmd.Process.Pid)
	}
}

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.pid"), filepath.Join(dir, "bad.pid")
	_ = os.WriteFile(good, []byte("1234\n"), 0o644)
	_ = os.WriteFile(bad, []byte("hello"), 0o644)
	if pid, err := process.ReadPIDFile(good); err != nil || pid != 1234 {
		t.Fatalf("ReadPIDFile(good) = %d, %v", pid, err)
	}
	if _, err := process.ReadPIDFile(bad); err == nil {
		t.Fatal("ReadPIDFile accepted a file without a pid")
	}
	pg := filepath.Join(dir, "postmaster.pid")
	_ = os.WriteFile(pg, []byte("2622\n/tmp/pg/data\n1795770843\n44865\n/tmp/pg\n127.0.0.1\n  9986302         9\nready   \n"), 0o644)
	if pid, err := process.ReadPIDFile(pg); err != nil || pid != 2622 {
		t.Fatalf("ReadPIDFile(postmaster.pid) = %d, %v", pid, err)
	}
}

// TestCheckRefusesWhatIsNeverATarget: init, kernel threads, this process
// and its ancestors are refused always; another user's process unless it
// is allowed; an ordinary process of ours is fine.
func TestCheckRefusesWhatIsNeverATarget(t *testing.T) {
	mine, _ := processtest.Sleepers(t)
	cases := []struct {
		name string
		pid  int
		want string // in the reason; "" for allowed
	}{
		{"init", 1, "the system's init"},
		{"kthreadd", 2, "a kernel thread"},
		{"itself", os.Getpid(), "faultline itself"},
		{"its parent", os.Getppid(), "an ancestor of this faultline"},
		{"an ordinary process", mine.Process.Pid, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := process.Check(c.pid, false)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Check(%d) = %v, want nil", c.pid, err)
				}
				return
			}
			var re *process.RefusedError
			if !errors.Is(err, process.ErrRefused) || !errors.As(err, &re) || !strings.Contains(re.Why, c.want) {
				t.Fatalf("Check(%d) = %v, want refused: %s", c.pid, err, c.want)
			}
			if process.Check(c.pid, true) == nil {
				t.Errorf("allowOtherUsers let pid %d through", c.pid)
			}
		})
	}
	t.Run("another user", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to start a process as another user")
		}
		cmd := exec.Command("sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if err := process.Check(cmd.Process.Pid, false); !errors.Is(err, process.ErrRefused) || !strings.Contains(err.Error(), "allow_other_users") {
			t.Fatalf("Check(another user's pid) = %v, want refused, pointing at allow_other_users", err)
		}
		if err := process.Check(cmd.Process.Pid, true); err != nil {
			t.Fatalf("Check(another user's pid, allowed) = %v", err)
		}
	})
}

// TestFindRefusesASelectionThatReachesInit: a match for everything is a
// mistake, refused with the reasons, and returns no pid to act on.
func TestFindRefusesASelectionThatReachesInit(t *testing.T) {
	pids, err := process.Find(process.Selector{Match: regexp.MustCompile(".")})
	if !errors.Is(err, process.ErrRefused) || len(pids) != 0 {
		t.Fatalf("Find(match .) = %v, %v, want refused with no pids", pids, err)
	}
	if !strings.Contains(err.Error(), "pid 1 (") {
		t.Errorf("the refusal does not name pid 1: %v", err)
	}
	pids, err = process.Find(process.Selector{PID: os.Getppid()})
	if !errors.Is(err, process.ErrRefused) || len(pids) != 0 {
		t.Fatalf("Find(pid: the parent) = %v, %v, want refused", pids, err)
	}
}
