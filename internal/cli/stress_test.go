package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/runner"
)

// smallFS mounts a 16 MiB tmpfs for a disk fill (root only).
func smallFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func writeStressExperiment(t *testing.T, fill string, hold string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "stress.yaml")
	src := fmt.Sprintf(`name: stress-all
targets:
  api:
    process:
      command: ["{self}", serve, --listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/version
traffic: {rate: 10/s, requests: ["GET http://{api.addr}/version"]}
steady_state: [error_rate < 50%%]
baseline: 1s
inject: %s
faults:
  - {name: burn cpu, cpu: {workers: 1, load: 50}}
  - {name: eat memory, memory: {size: 32MiB}}
  - {name: fill the disk, disk_fill: {path: "%s", free: 2MiB}}
  - {name: hold connections, connections: {address: "{api.addr}", count: 5}}
recovery: 5s
`, hold, fill)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// Every stress fault takes effect, says what it measured, and is undone.
func TestStressFaultsInARun(t *testing.T) {
	fill := smallFS(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(binary(t), "run", writeStressExperiment(t, fill, "3s"), "--allow-no-stop", "--out", out, "--json")
	stdout, err := cmd.Output()
	if err != nil {
		logs, _ := os.ReadFile(filepath.Join(out, "processes.log"))
		t.Fatalf("run: %v\n%s\n%s", err, stdout, logs)
	}
	var res runner.Result
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatal(err)
	}
	want := map[string]*regexp.Regexp{
		"burn cpu":         regexp.MustCompile(`^measured \d\.\d\d cores busy`),
		"eat memory":       regexp.MustCompile(`^measured \d+\.\d MiB resident`),
		"fill the disk":    regexp.MustCompile(`^wrote \d+\.\d MiB, leaving \d\.\d MiB free`),
		"hold connections": regexp.MustCompile(`^held 5 connections`),
	}
	for _, f := range res.Faults {
		if len(f.Evidence) == 0 || !want[f.Name].MatchString(f.Evidence[0]) || f.RevertedAt == nil {
			t.Errorf("fault %q: evidence %q, reverted %v", f.Name, f.Evidence, f.RevertedAt != nil)
		}
	}
	if entries, _ := os.ReadDir(fill); len(entries) != 0 {
		t.Errorf("fill file left: %v", entries)
	}
	if left, _ := process.Match(regexp.MustCompile(regexp.QuoteMeta(binary(t)) + " stress ")); len(left) > 0 {
		t.Errorf("stress processes left: %v", left)
	}
}

// A runner killed while a disk fill holds: the stress dies with it, and
// recover removes the file it left.
func TestRecoverRemovesAFillFile(t *testing.T) {
	fill := smallFS(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(binary(t), "run", writeStressExperiment(t, fill, "60s"), "--allow-no-stop", "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	processtest.WaitFor(t, "the fill", func() bool {
		events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
		for _, e := range events {
			if e.Type == journal.Intent && strings.Contains(e.Message, "stress connections") {
				return true // the last fault started: the fill is in place
			}
		}
		return false
	})
	_ = cmd.Process.Kill() // SIGKILL: no rollback
	_ = cmd.Wait()
	processtest.WaitFor(t, "the stress children to die with the runner", func() bool {
		left, _ := process.Match(regexp.MustCompile(regexp.QuoteMeta(binary(t)) + " stress "))
		return len(left) == 0
	})
	entries, _ := os.ReadDir(fill)
	if len(entries) != 1 {
		t.Fatalf("after SIGKILL: %d files in the filled file system, want the fill file (the test proves nothing otherwise)", len(entries))
	}
	code, stdout, stderr := run(t, "recover", out)
	if code != 0 || !strings.Contains(stdout, "removed "+filepath.Join(fill, entries[0].Name())) {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	if entries, _ := os.ReadDir(fill); len(entries) != 0 {
		t.Errorf("recover left %v", entries)
	}
}

func TestStressCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"stress", "cpu", "--load", "0"},
		{"stress", "memory"},
		{"stress", "disk", "--path", "/"},
		{"stress", "disk", "--path", "/", "--fill", "1MiB"},
		{"stress", "connections"},
		{"stress", "connections", "--protocol", "postgres"},
		{"stress", "cpu", "--duration", "-1s"},
	} {
		if code, _, errOut := run(t, args...); code != 2 || errOut == "" {
			t.Errorf("%q = %d %q, want 2 with a message", args, code, errOut)
		}
	}
}

// A stress started by hand is registered: status lists it with its fill
// file, and after a SIGKILL recover removes the file. One stopped by a
// signal exits 3; with --json, stdout holds the JSON alone.
func TestStandaloneStressIsRecoverable(t *testing.T) {
	fill, stateDir := smallFS(t), t.TempDir()
	cmd := exec.Command(binary(t), "stress", "disk", "--path", fill, "--free", "2MiB", "--state-dir", stateDir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	file := filepath.Join(fill, fmt.Sprintf(".faultline-fill-%d", cmd.Process.Pid))
	processtest.WaitFor(t, "status to show the fill", func() bool {
		_, stdout, _ := run(t, "status", "--state-dir", stateDir)
		return strings.Contains(stdout, "stress disk") && strings.Contains(stdout, "injected: stress disk (fill file "+file+")")
	})
	_ = cmd.Process.Kill() // SIGKILL: the file stays
	_ = cmd.Wait()
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("after SIGKILL: %v (the test proves nothing without the file)", err)
	}
	code, stdout, stderr := run(t, "recover", "--state-dir", stateDir)
	if code != 0 || !strings.Contains(stdout, "removed "+file) {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the fill file is still there: %v", err)
	}
	if _, stdout, _ := run(t, "status", "--state-dir", stateDir); !strings.Contains(stdout, "no runs in progress") {
		t.Errorf("status after recover: %q", stdout)
	}
	if left, _ := os.ReadDir(filepath.Join(stateDir, "stress")); len(left) != 0 {
		t.Errorf("the stress's journal is still in the state directory after recover: %v", left)
	}
	// A state directory that cannot be written stops a fill (nothing could
	// recover it), not a stress that leaves nothing behind.
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "stress", "disk", "--path", fill, "--free", "2MiB", "--state-dir", blocked); code != 4 || !strings.Contains(errOut, "cannot journal the fill") {
		t.Errorf("a fill without a state directory = %d %q, want 4", code, errOut)
	}
	if code, _, errOut := run(t, "stress", "cpu", "--duration", "100ms", "--state-dir", blocked); code != 0 || !strings.Contains(errOut, "warning: cannot register") {
		t.Errorf("a cpu stress without a state directory = %d %q, want 0 and a warning", code, errOut)
	}

	cpu := exec.Command(binary(t), "stress", "cpu", "--json", "--state-dir", stateDir)
	var out, errOut strings.Builder
	cpu.Stdout, cpu.Stderr = &out, &errOut
	if err := cpu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cpu.Process.Kill(); _ = cpu.Wait() })
	processtest.WaitFor(t, "the cpu stress registered", func() bool {
		_, stdout, _ := run(t, "status", "--state-dir", stateDir)
		return strings.Contains(stdout, "stress cpu")
	})
	_ = cpu.Process.Signal(syscall.SIGTERM)
	err := cpu.Wait()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("stress cpu after SIGTERM: %v, want exit 3", err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || res["kind"] != "cpu" {
		t.Errorf("stdout with --json is not the JSON alone (%v): %q", err, out.String())
	}
}

// A memory stress is the OOM killer's first choice, not a service of the
// machine; one larger than the machine is refused.
func TestMemoryStressIsTheOOMKillersChoice(t *testing.T) {
	stateDir := t.TempDir()
	cmd := exec.Command(binary(t), "stress", "memory", "--size", "16MiB", "--state-dir", stateDir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	processtest.WaitFor(t, "the memory stress registered", func() bool {
		_, stdout, _ := run(t, "status", "--state-dir", stateDir)
		return strings.Contains(stdout, "stress memory")
	})
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", cmd.Process.Pid))
	if err != nil || strings.TrimSpace(string(b)) != "1000" {
		t.Errorf("oom_score_adj of the memory stress: %q, %v; want 1000", b, err)
	}
	// (Not in this process: the stress would make the tests the OOM killer's choice.)
	big := exec.Command(binary(t), "stress", "memory", "--size", "100TiB", "--state-dir", stateDir)
	b, err = big.CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(b), "more than this machine has") {
		t.Errorf("stress memory --size 100TiB = %v %q, want 2", err, b)
	}
}

// A stress fault that its command refuses says why in the run's error,
// not only in processes.log.
func TestStressFaultRefusedSaysWhy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "root.yaml")
	src := fmt.Sprintf("name: rootfill\nfaults:\n  - {name: fill, disk_fill: {path: %q, free: 1GiB}}\ninject: 1s\nbaseline: 1s\n", t.TempDir())
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", filepath.Join(t.TempDir(), "run"))
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(b), "the stress ended before it was in place: disk: ") || !strings.Contains(string(b), "is on the root file system") {
		t.Errorf("run = %v %q, want 4 and the stress's reason", err, b)
	}
}

// A stress process killed before the end (the OOM killer's choice, for
// memory) has given back what it held: the run does not end in ERROR.
func TestStressKilledMidRunIsNotARevertFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mem.yaml")
	src := "name: mem\nfaults:\n  - {name: eat memory, memory: {size: 16MiB}}\ninject: 4s\nbaseline: 1s\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	re := regexp.MustCompile(regexp.QuoteMeta(binary(t)) + " stress memory")
	var child []int
	processtest.WaitFor(t, "the memory stress", func() bool {
		child, _ = process.Match(re)
		return len(child) == 1
	})
	processtest.WaitFor(t, "the stress in place", func() bool {
		events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
		for _, e := range events {
			if e.Type == journal.Done {
				return true
			}
		}
		return false
	})
	_ = syscall.Kill(child[0], syscall.SIGKILL) // as the OOM killer would
	err := cmd.Wait()
	b, _ := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil || !strings.Contains(string(b), "killed by SIGKILL before the end") {
		t.Errorf("run whose stress was killed: %v\n%s", err, b)
	}
}
