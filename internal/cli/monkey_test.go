package cli_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/process/processtest"
)

func writeMonkey(t *testing.T, src string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "monkey.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// The kill switch stops a running monkey: exit 3, journal closed.
func TestMonkeyStopsOnHalt(t *testing.T) {
	file := writeMonkey(t, `leashed: true
schedule: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: "00:00-24:00"}
groups:
  none: {process: {match: "no-such-process-anywhere-xyz"}}
`)
	stateDir, out := t.TempDir(), filepath.Join(t.TempDir(), "m")
	cmd := exec.Command(binary(t), "monkey", "-c", file, "--out", out, "--state-dir", stateDir)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); !strings.HasPrefix(line, "faultline monkey (leashed") {
		t.Fatalf("first line %q", line)
	}
	code, statusOut, _ := run(t, "status", "--state-dir", stateDir)
	if code != 0 || !strings.Contains(statusOut, "monkey") {
		t.Errorf("status while the monkey runs = %d %q", code, statusOut)
	}
	start := time.Now()
	if code, _, _ := run(t, "halt", "--state-dir", stateDir); code != 0 {
		t.Fatalf("halt = %d", code)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("monkey after halt: %v, want exit 3", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the monkey took %v to stop", took)
	}
	b, _ := os.ReadFile(filepath.Join(out, "monkey.jsonl"))
	if !strings.Contains(string(b), `"type":"run_end"`) {
		t.Errorf("journal not closed:\n%s", b)
	}
}

func TestMonkeyFileErrors(t *testing.T) {
	file := writeMonkey(t, "schedule: {hours: \"9-5\"}\ngroups: {web: {process: {pid: 1}}}\n")
	code, _, errOut := run(t, "monkey", "-c", file, "--dry-run")
	if code != 2 || !strings.Contains(errOut, file+":1:") || !strings.Contains(errOut, "schedule.hours") {
		t.Errorf("monkey with a bad file = %d %q", code, errOut)
	}
	if code, _, _ := run(t, "monkey"); code != 2 {
		t.Errorf("monkey without -c = %d", code)
	}
	good := writeMonkey(t, "groups: {web: {process: {match: web}}}\n")
	if code, out, _ := run(t, "monkey", "-c", good, "--dry-run"); code != 0 || !strings.Contains(out, `group web: processes matching "web"`) {
		t.Errorf("dry run = %d %q", code, out)
	}
}

// TestMonkeyDryRunListsTheMembersNow: a dry run names the processes each
// group selects now, as the monkey would find them.
func TestMonkeyDryRunListsTheMembersNow(t *testing.T) {
	cmd, marker := processtest.Sleepers(t)
	file := writeMonkey(t, fmt.Sprintf("groups: {workers: {process: {match: %q}}, nobody: {process: {match: no-such-process-%d}}}\n", marker, os.Getpid()))
	code, out, errOut := run(t, "monkey", "-c", file, "--dry-run")
	if code != 0 {
		t.Fatalf("dry run = %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"members now", fmt.Sprintf("group workers: pid %d (sh -c", cmd.Process.Pid), "group nobody: no process matches"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
}
