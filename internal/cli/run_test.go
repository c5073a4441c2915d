package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/cli"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
	"github.com/faultline/faultline/record"
	"github.com/faultline/faultline/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func writeFreeze(t *testing.T, marker string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "freeze.yaml")
	src := fmt.Sprintf("name: freeze\ntargets:\n  workers: {process: {match: %q}}\nfaults:\n  - {name: freeze the workers, target: workers, stop: {}}\ninject: 60s\nbaseline: 1s\n", marker)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startFreeze runs the binary on a freeze experiment against fresh
// sleepers and returns once their stop fault is in place.
func startFreeze(t *testing.T, args ...string) (sleepers *exec.Cmd, runner *exec.Cmd, out string) {
	t.Helper()
	sleepers, marker := processtest.Sleepers(t)
	out = filepath.Join(t.TempDir(), "run")
	runner = exec.Command(binary(t), append([]string{"run", writeFreeze(t, marker), "--allow-no-stop", "--out", out}, args...)...)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, sleepers.Process.Pid) })
	return sleepers, runner, out
}

// TestRecoverAfterSIGKILL kills the runner while a fault is in place:
// the processes stay stopped until faultline recover resumes them.
func TestRecoverAfterSIGKILL(t *testing.T) {
	cmd, runner, out := startFreeze(t)
	_ = runner.Process.Kill() // SIGKILL: no rollback
	_ = runner.Wait()
	if !processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("the processes resumed without recover: the test proves nothing")
	}
	events, err := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
	if err != nil || journal.Clean(events) || len(journal.Pending(events)) == 0 {
		t.Fatalf("journal after SIGKILL: %d events, clean %v, %v", len(events), journal.Clean(events), err)
	}

	// A dry run into that directory is refused as the run itself would be.
	if code, _, errOut := run(t, "run", runner.Args[2], "--allow-no-stop", "--dry-run", "--out", out); code != cli.ExitUsage || !strings.Contains(errOut, "holds a run already") {
		t.Errorf("dry run into a run's directory = %d %q, want %d", code, errOut, cli.ExitUsage)
	}
	code, stdout, stderr := run(t, "recover", out)
	if code != 0 || !strings.Contains(stdout, "freeze the workers: resumed 3 process(es)") {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("still stopped after recover")
	}
	code, stdout, _ = run(t, "recover", filepath.Dir(out))
	if code != 0 || !strings.Contains(stdout, "ended cleanly, nothing to do") {
		t.Fatalf("second recover = %d %q, want harmless", code, stdout)
	}
}

func TestRunSIGTERMRollsBack(t *testing.T) {
	cmd, runner, out := startFreeze(t)
	_ = runner.Process.Signal(syscall.SIGTERM)
	err := runner.Wait()
	var ee *exec.ExitError
	if err == nil || !asExit(err, &ee) || ee.ExitCode() != cli.ExitAborted {
		t.Fatalf("run after SIGTERM: %v, want exit %d", err, cli.ExitAborted)
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("processes still stopped after the run exited")
	}
	events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
	if !journal.Clean(events) || len(journal.Pending(events)) != 0 {
		t.Fatal("journal does not show a clean, fully reverted run")
	}
	// Every run writes its reports, an aborted one too.
	for _, f := range []string{"report.html", "junit.xml", "summary.md"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("after the run: %v", err)
		}
	}
}

// A second Ctrl-C ends the run as soon as every fault is reverted: it
// does not wait for requests in flight (here they would take the traffic's
// 30 s timeout) nor for a launched process that ignores SIGTERM, and it
// leaves the reports to 'faultline report'. The journal still ends clean.
func TestRunSecondInterruptHurries(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	marker := fmt.Sprintf("faultline-hurry-%d", time.Now().UnixNano())
	src := fmt.Sprintf(`name: hurry
targets:
  stubborn:
    process: {command: [sh, -c, "trap '' TERM; exec sleep 300", %q]}
traffic:
  rate: 20/s
  timeout: 30s
  requests: [GET %s/]
faults:
  - {name: freeze it, target: stubborn, stop: {}}
baseline: 1s
inject: 60s
`, marker, hang.URL)
	file := filepath.Join(t.TempDir(), "hurry.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	runner := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", out)
	stderr, err := runner.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log []string
	waitLine := func(what string) {
		t.Helper()
		for line := range lines {
			log = append(log, line)
			if strings.Contains(line, what) {
				return
			}
		}
		t.Fatalf("the run ended without printing %q:\n%s", what, strings.Join(log, "\n"))
	}
	waitLine(`injected "freeze it"`)
	_ = runner.Process.Signal(os.Interrupt)
	waitLine("interrupted: rolling back")
	second := time.Now()
	_ = runner.Process.Signal(os.Interrupt)
	err = runner.Wait()
	took := time.Since(second)
	for line := range lines {
		log = append(log, line)
	}
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != cli.ExitAborted {
		t.Fatalf("run after two interrupts: %v, want exit %d\n%s", err, cli.ExitAborted, strings.Join(log, "\n"))
	}
	if took >= 25*time.Second {
		t.Errorf("the run took %v after the second interrupt: it waited for the requests in flight", took)
	}
	if !strings.Contains(strings.Join(log, "\n"), "reports skipped") {
		t.Errorf("no word of the skipped reports:\n%s", strings.Join(log, "\n"))
	}
	events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
	if !journal.Clean(events) || len(journal.Pending(events)) != 0 {
		t.Error("journal does not show a clean, fully reverted run")
	}
	if left, _ := process.Match(regexp.MustCompile(regexp.QuoteMeta(marker))); len(left) > 0 {
		t.Errorf("the launched process outlived the run: %v", left)
	}
	if b, err := os.ReadFile(filepath.Join(out, "result.json")); err != nil || !strings.Contains(string(b), `"verdict": "ABORTED"`) {
		t.Errorf("result.json: %v\n%s", err, b)
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

func TestRunDryRunTouchesNothing(t *testing.T) {
	cmd, marker := processtest.Sleepers(t)
	file := writeFreeze(t, marker)
	dir := t.TempDir()
	t.Chdir(dir)
	code, stdout, stderr := run(t, "run", file, "--allow-no-stop", "--dry-run", "--seed", "3")
	if code != 0 || !strings.Contains(stdout, "running process(es): 1 now:") || !strings.Contains(stdout, fmt.Sprintf("pid %d (", cmd.Process.Pid)) ||
		!strings.Contains(stdout, `"freeze the workers"`) || !strings.Contains(stdout, "nothing was started or touched") {
		t.Fatalf("dry run = %d\n%s\n%s", code, stdout, stderr)
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("the dry run stopped the processes")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the dry run wrote %d entries in the working directory", len(entries))
	}
}

// TestRunDryRunRefusesWhatARunWould: a dry run names the processes a
// target reaches and refuses, with exit 4, a target that reaches init or
// faultline's own ancestry, as the run would at setup.
func TestRunDryRunRefusesWhatARunWould(t *testing.T) {
	path := filepath.Join(t.TempDir(), "everything.yaml")
	src := `name: everything
targets:
  all: {process: {match: ".", restart: ["true"]}}
  parent: {process: {pid: "${P}", restart: ["true"]}}
faults:
  - {name: freeze, target: all, stop: {}, duration: 1s}
  - {name: freeze the parent, target: parent, stop: {}, duration: 1s}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "run", path, "--allow-no-stop", "--dry-run", "--var", fmt.Sprintf("P=%d", os.Getppid()))
	if code != cli.ExitError {
		t.Fatalf("dry run = %d, want 4\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"REFUSED", "pid 1 (", "the system's init", fmt.Sprintf("pid %d (", os.Getppid()), "an ancestor of this faultline"} {
		if !strings.Contains(stdout+stderr, want) {
			t.Errorf("dry run output lacks %q:\n%s\n%s", want, stdout, stderr)
		}
	}
}

func TestRunInvalidFileIsExit2(t *testing.T) {
	code, _, stderr := run(t, "run", "../../experiment/testdata/invalid/typos.yaml")
	if code != cli.ExitUsage || !strings.Contains(stderr, `typos.yaml:2:1: basline: unknown field (did you mean "baseline"?)`) {
		t.Fatalf("run invalid = %d %q", code, stderr)
	}
}

func TestRunRefusesRemoteTargetsUnlessAllowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "remote.yaml")
	src := "name: remote\ntargets:\n  db: {proxy: {listen: 127.0.0.1:0, upstream: db.internal:5432}}\nfaults: [{name: d, target: db, down: {}, duration: 1s}]\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "run", path, "--allow-no-stop", "--dry-run")
	if code != cli.ExitUsage || !strings.Contains(stderr, "proxy upstream db.internal:5432") || !strings.Contains(stderr, "--allow-remote") {
		t.Fatalf("run with a remote upstream = %d %q, want 2 naming it", code, stderr)
	}
	if code, _, stderr := run(t, "run", path, "--allow-no-stop", "--dry-run", "--allow-remote"); code != 0 {
		t.Fatalf("with --allow-remote = %d %q", code, stderr)
	}
}

func TestRecoverRemovesRemoteToxics(t *testing.T) {
	srv, api := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	p, err := srv.Create(proxy.ProxyConfig{Name: "db", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddToxic(proxy.Toxic{Name: "faultline-r1-slow", Effect: proxy.Latency{Delay: time.Second}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddToxic(proxy.Toxic{Name: "mine", Effect: proxy.Noop{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Create(proxy.ProxyConfig{Name: "down", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	_ = os.MkdirAll(dir, 0o755)
	j, err := journal.Create(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []journal.Event{
		{Type: journal.RunStart},
		{Type: journal.Intent, ID: "1", Name: "slow", Undo: &journal.Undo{Kind: "remove_toxic", API: api, Proxy: "db", Toxic: "faultline-r1-slow"}},
		{Type: journal.Done, ID: "1"},
		{Type: journal.Intent, ID: "2", Name: "outage", Undo: &journal.Undo{Kind: "enable_proxy", API: api, Proxy: "down"}},
	} {
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	code, out, errOut := run(t, "recover", dir)
	if code != 0 {
		t.Fatalf("recover = %d\n%s\n%s", code, out, errOut)
	}
	if tx := p.Toxics(); len(tx) != 1 || tx[0].Name != "mine" {
		t.Fatalf("toxics after recover = %+v, want only the user's", tx)
	}
	if d, _ := srv.Get("down"); !d.Enabled() {
		t.Fatal("the proxy taken down was not enabled again")
	}
}

// TestRecoverLeavesALiveRunAlone: recover must not undo the faults of a
// run whose runner is still alive.
func TestRecoverLeavesALiveRunAlone(t *testing.T) {
	cmd, _, out := startFreeze(t)
	code, stdout, _ := run(t, "recover", filepath.Dir(out))
	if code != 0 || !strings.Contains(stdout, "still running") {
		t.Fatalf("recover during a run = %d %q, want it left alone", code, stdout)
	}
	if !processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("recover resumed the processes of a live run")
	}
}

// TestHaltAbortsRunsAndRefusesNewOnes uses its own state directory.
func TestHaltAbortsRunsAndRefusesNewOnes(t *testing.T) {
	stateDir := t.TempDir()
	cmd, runner, out := startFreeze(t, "--state-dir", stateDir)
	file := runner.Args[2]
	code, stdout, _ := run(t, "status", "--state-dir", stateDir)
	if code != 0 || !strings.Contains(stdout, "freeze  pid") || !strings.Contains(stdout, "injected: freeze the workers (3 process(es) stopped: pid ") {
		t.Fatalf("status = %d %q", code, stdout)
	}
	if code, stdout, _ := run(t, "halt", "--state-dir", stateDir, "--reason", "test"); code != 0 || !strings.Contains(stdout, "1 run(s) in progress") {
		t.Fatalf("halt = %d %q", code, stdout)
	}
	err := runner.Wait()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != cli.ExitAborted {
		t.Fatalf("run after halt: %v, want exit %d", err, cli.ExitAborted)
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("the halted run left the processes stopped")
	}
	// The result, and so the reports, say why the run stopped.
	if b, err := os.ReadFile(filepath.Join(out, "result.json")); err != nil || !regexp.MustCompile(`interrupted during injection: halted: \S+ test`).Match(b) {
		t.Errorf("result.json does not give the halt as the reason (%v):\n%s", err, b)
	}
	code, _, stderr := run(t, "run", file, "--allow-no-stop", "--out", filepath.Join(t.TempDir(), "r2"), "--state-dir", stateDir)
	if code != cli.ExitError || !strings.Contains(stderr, "halted since") {
		t.Fatalf("run while halted = %d %q, want 4", code, stderr)
	}
	if code, _, _ := run(t, "resume", "--state-dir", stateDir); code != 0 {
		t.Fatal("resume failed")
	}
	if code, stdout, _ := run(t, "status", "--state-dir", stateDir); code != 0 || !strings.Contains(stdout, "no runs in progress") {
		t.Fatalf("status after the run = %d %q", code, stdout)
	}
}

// A run rolls back on SIGHUP (its terminal or ssh session gone) as on
// SIGTERM, and keeps going when nobody reads its output any more (a
// closed pipe, as with '| head'), instead of dying with the fault in place.
func TestRunRollsBackOnHangupWithItsOutputGone(t *testing.T) {
	if signal.Ignored(syscall.SIGHUP) {
		// Started under nohup: the runner inherits it and, as nohup asks,
		// keeps ignoring the hangup.
		t.Skip("SIGHUP is ignored in this process (nohup): the runner would rightly ignore it too")
	}
	sleepers, marker := processtest.Sleepers(t)
	out := filepath.Join(t.TempDir(), "run")
	runner := exec.Command(binary(t), "run", writeFreeze(t, marker), "--allow-no-stop", "--out", out)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	runner.Stdout, runner.Stderr = w, w
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	w.Close()
	r.Close() // every write of the runner's from now on meets a broken pipe
	processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, sleepers.Process.Pid) })
	if err := runner.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err = runner.Wait()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != cli.ExitAborted {
		t.Fatalf("run after SIGHUP, its output gone: %v, want exit %d", err, cli.ExitAborted)
	}
	if processtest.Stopped(t, sleepers.Process.Pid) {
		t.Fatal("the run left the processes stopped")
	}
	if b, err := os.ReadFile(filepath.Join(out, "result.json")); err != nil || !strings.Contains(string(b), "interrupted during injection: hangup signal received") {
		t.Errorf("result.json does not name the signal (%v):\n%s", err, b)
	}
}

// recover, run from any directory, finds a killed run that wrote to a
// relative --out through the state directory; a run whose recovery failed
// stays registered (status shows it, the next recover tries again) until
// a recover succeeds.
func TestRecoverKeepsTrackUntilRecovered(t *testing.T) {
	sleepers, marker := processtest.Sleepers(t)
	stateDir, work := t.TempDir(), t.TempDir()
	flag := filepath.Join(t.TempDir(), "revert-may-succeed")
	file := filepath.Join(t.TempDir(), "two.yaml")
	src := fmt.Sprintf(`name: two
targets:
  workers: {process: {match: %q}}
faults:
  - {name: a revert that fails for now, target: workers, exec: {inject: ["true"], revert: ["test", "-e", %q]}}
  - {name: freeze the workers, target: workers, stop: {}}
inject: 60s
baseline: 1s
`, marker, flag)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	runner := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", "relative-run", "--state-dir", stateDir)
	runner.Dir = work
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, sleepers.Process.Pid) })
	_ = runner.Process.Kill() // SIGKILL: no rollback
	_ = runner.Wait()

	// This test's working directory is not work: the state directory
	// must say where the run wrote.
	code, stdout, stderr := run(t, "recover", "--state-dir", stateDir)
	if code != cli.ExitError || !strings.Contains(stdout, "freeze the workers: resumed") {
		t.Fatalf("recover with a revert that fails = %d, want %d\n%s\n%s", code, cli.ExitError, stdout, stderr)
	}
	if processtest.Stopped(t, sleepers.Process.Pid) {
		t.Fatal("recover did not resume the processes")
	}
	if code, stdout, _ := run(t, "status", "--state-dir", stateDir); code != 0 || !strings.Contains(stdout, "DEAD") {
		t.Fatalf("status after a recover that failed = %d %q: the run must stay listed", code, stdout)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run(t, "recover", "--state-dir", stateDir); code != 0 {
		t.Fatalf("second recover = %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ := run(t, "status", "--state-dir", stateDir); code != 0 || !strings.Contains(stdout, "no runs in progress") {
		t.Fatalf("status after the recover = %d %q", code, stdout)
	}
}

// An experiment's name becomes one directory under faultline-runs, never
// a path that leaves it.
func TestRunDirectoryName(t *testing.T) {
	for name, want := range map[string]string{
		"slow-api":      "slow-api",
		"../../escaped": "-.-..-escaped",
		"slow api / ü":  "slow-api-----",
		".hidden":       "-hidden",
		"v1.2_checkout": "v1.2_checkout",
		"a/../../b":     "a-..-..-b",
	} {
		got := cli.DirName(name)
		if got != want || strings.ContainsAny(got, "/\\") || got == ".." {
			t.Errorf("DirName(%q) = %q, want %q", name, got, want)
		}
	}
}

// status lists every fault a live run has in place, also a toxic on a
// proxy inside the runner, which needs no undo record.
func TestStatusShowsEmbeddedProxyFaults(t *testing.T) {
	stateDir := t.TempDir()
	file := filepath.Join(t.TempDir(), "link.yaml")
	src := "name: link\ntargets:\n  link: {proxy: {listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:9\"}}\n" +
		"faults:\n  - {name: slow link, target: link, latency: {delay: 100ms}}\ninject: 60s\nbaseline: 1s\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	runner := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", filepath.Join(t.TempDir(), "run"), "--state-dir", stateDir)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	processtest.WaitFor(t, "status to show the toxic", func() bool {
		_, stdout, _ := run(t, "status", "--state-dir", stateDir)
		return strings.Contains(stdout, "injected: slow link (add toxic")
	})
	_ = runner.Process.Signal(syscall.SIGTERM)
	var ee *exec.ExitError
	if err := runner.Wait(); !asExit(err, &ee) || ee.ExitCode() != cli.ExitAborted {
		t.Fatalf("run after SIGTERM: %v, want exit %d", err, cli.ExitAborted)
	}
}

// Signals as a terminal, nohup and a pipe deliver them: a run under nohup
// ignores SIGHUP; repeated SIGHUPs from a closing terminal do not
// escalate to skipping the reports; the processes a run starts get
// SIGPIPE's default, not faultline's handling of it.
func TestRunSignalsFromTheEnvironment(t *testing.T) {
	t.Run("nohup", func(t *testing.T) {
		sleepers, marker := processtest.Sleepers(t)
		out := filepath.Join(t.TempDir(), "run")
		runner := exec.Command("sh", "-c", `trap "" HUP; exec "$0" "$@"`, binary(t), "run", writeFreeze(t, marker), "--allow-no-stop", "--out", out)
		if err := runner.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
		processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, sleepers.Process.Pid) })
		_ = runner.Process.Signal(syscall.SIGHUP)
		_ = runner.Process.Signal(syscall.SIGTERM)
		_ = runner.Wait()
		if b, err := os.ReadFile(filepath.Join(out, "result.json")); err != nil || !strings.Contains(string(b), "terminated signal received") {
			t.Errorf("a run started ignoring SIGHUP: the reason is not SIGTERM's (%v):\n%s", err, b)
		}
	})
	t.Run("repeated SIGHUP", func(t *testing.T) {
		sleepers, marker := processtest.Sleepers(t)
		out := filepath.Join(t.TempDir(), "run")
		runner := exec.Command(binary(t), "run", writeFreeze(t, marker), "--allow-no-stop", "--out", out)
		stderr, err := runner.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := runner.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
		processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, sleepers.Process.Pid) })
		_ = runner.Process.Signal(syscall.SIGHUP)
		var rest strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "interrupted: rolling back") {
				_ = runner.Process.Signal(syscall.SIGHUP) // the terminal's second
				break
			}
		}
		_, _ = io.Copy(&rest, stderr)
		_ = runner.Wait()
		if strings.Contains(rest.String(), "reports skipped") {
			t.Errorf("a second SIGHUP escalated as a second Ctrl-C does:\n%s", rest.String())
		}
		if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
			t.Errorf("no report after SIGHUPs: %v", err)
		}
	})
	t.Run("children get SIGPIPE's default", func(t *testing.T) {
		status := filepath.Join(t.TempDir(), "status")
		file := filepath.Join(t.TempDir(), "child.yaml")
		src := fmt.Sprintf("name: child\nfaults:\n  - {name: look, exec: {inject: [sh, -c, 'grep SigIgn /proc/self/status > %s'], revert: [\"true\"]}}\ninject: 1s\nbaseline: 1s\n", status)
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := run(t, "run", file, "--allow-no-stop", "--out", filepath.Join(t.TempDir(), "run")); code != 0 {
			t.Fatalf("run = %d %s %s", code, out, errOut)
		}
		b, err := os.ReadFile(status)
		if err != nil {
			t.Fatal(err)
		}
		var mask uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "SigIgn:\t%x", &mask); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if mask&(1<<(int(syscall.SIGPIPE)-1)) != 0 {
			t.Errorf("the exec fault's command ignores SIGPIPE (SigIgn %016x)", mask)
		}
	})
}

// A closed output ends a short command quietly with the exit code a shell
// gives a program SIGPIPE ended, not a usage error.
func TestClosedOutput(t *testing.T) {
	cmd := exec.Command(binary(t), "schema")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = w, &stderr
	r.Close() // before anything is written
	err = cmd.Run()
	w.Close()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != cli.ExitBrokenPipe || stderr.Len() != 0 {
		t.Errorf("schema into a closed pipe: %v, stderr %q; want exit %d and nothing said", err, stderr.String(), cli.ExitBrokenPipe)
	}
}

// recover undoes what a killed monkey left (its journal is monkey.jsonl),
// and a run recovered through another path to its directory (a symbolic
// link) is no longer listed.
func TestRecoverAMonkeyThroughAnotherPath(t *testing.T) {
	stateDir, flag := t.TempDir(), filepath.Join(t.TempDir(), "restarted")
	real := filepath.Join(t.TempDir(), "runs")
	if err := os.MkdirAll(filepath.Join(real, "monkey-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	dead := journal.Proc{PID: 1 << 22, Start: 1} // no such process
	j, err := journal.Create(filepath.Join(real, "monkey-1", "monkey.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []journal.Event{
		{Type: journal.RunStart, Name: "monkey", Runner: &dead},
		{Type: journal.Intent, ID: "1", Name: "web", Undo: &journal.Undo{Kind: "exec", Command: []string{"touch", flag}}, Message: "SIGKILL to pid 42"},
		{Type: journal.Done, ID: "1"},
	} {
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	if _, err := state.Register(stateDir, state.Run{Name: "monkey", Out: filepath.Join(link, "monkey-1"), Runner: dead}); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := run(t, "status", "--state-dir", stateDir); code != 0 || !strings.Contains(stdout, "left injected: web (SIGKILL to pid 42; undone by running touch") {
		t.Errorf("status of a dead monkey = %d %q", code, stdout)
	}
	code, stdout, stderr := run(t, "recover", filepath.Join(real, "monkey-1"), "--state-dir", stateDir)
	if code != 0 || !strings.Contains(stdout, "web: ") {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(flag); err != nil {
		t.Errorf("the monkey's pending restart was not run: %v", err)
	}
	if code, stdout, _ := run(t, "status", "--state-dir", stateDir); code != 0 || !strings.Contains(stdout, "no runs in progress") {
		t.Errorf("status after recover through the real path = %d %q", code, stdout)
	}
}

// TestRecoverStopsWhatALaunchedProcessStarted: a launched shell's
// background children outlive the shell when the runner is killed with
// SIGKILL (the kernel ends the shell, not its children); recover stops
// its whole process group.
func TestRecoverStopsWhatALaunchedProcessStarted(t *testing.T) {
	n := 100000 + rand.IntN(800000)
	path := filepath.Join(t.TempDir(), "children.yaml")
	src := fmt.Sprintf(`name: children
targets:
  svc: {process: {command: [sh, -c, "sleep %d & sleep %d & wait"]}}
faults: [{name: nothing, exec: {inject: ["true"], revert: ["true"]}}]
inject: 60s
baseline: 100ms
`, n, n+1)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	children := func() []int {
		pids, _ := process.Match(regexp.MustCompile(fmt.Sprintf(`^sleep (%d|%d)$`, n, n+1)))
		return pids
	}
	t.Cleanup(func() {
		for _, pid := range children() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	out := filepath.Join(t.TempDir(), "run")
	runner := exec.Command(binary(t), "run", path, "--allow-no-stop", "--out", out)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	processtest.WaitFor(t, "the shell's two children", func() bool { return len(children()) == 2 })
	_ = runner.Process.Kill()
	_ = runner.Wait()
	processtest.WaitFor(t, "the shell to die with the runner", func() bool {
		pids, _ := process.Match(regexp.MustCompile(fmt.Sprintf(`^sh -c sleep %d`, n)))
		return len(pids) == 0
	})
	if len(children()) != 2 {
		t.Fatal("the children did not outlive the runner: the test proves nothing")
	}
	code, stdout, stderr := run(t, "recover", out)
	if code != 0 {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	processtest.WaitFor(t, "the children to be stopped", func() bool { return len(children()) == 0 })
}

// TestRecoverWithADamagedJournal: a damaged line (a short write on a full
// disk, then more) does not stop recover from undoing what the other
// lines name; it exits 4 naming the line, and the run stays on record.
func TestRecoverWithADamagedJournal(t *testing.T) {
	cmd, runner, out := startFreeze(t)
	_ = runner.Process.Kill()
	_ = runner.Wait()
	path := filepath.Join(out, "journal.jsonl")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("{\"time\":\"2026-12-02T10:00:00Z\",\"type\":\"no\n")
	f.Close()
	lines := strings.Count(string(must(os.ReadFile(path))), "\n")
	code, stdout, stderr := run(t, "recover", out)
	if code != cli.ExitError || !strings.Contains(stdout, fmt.Sprintf("line(s) [%d] could not be read", lines)) {
		t.Fatalf("recover = %d, want 4 naming line %d\n%s\n%s", code, lines, stdout, stderr)
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("the processes are still stopped: recover gave up on the whole journal")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestReplayCommandKeepsTheFlags: the replay command a run prints (and
// records) runs the same experiment: the flags that changed what ran are
// in it, and result.json records them.
func TestReplayCommandKeepsTheFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.yaml")
	src := "name: replay\nfaults: [{name: nothing, exec: {inject: [\"true\"], revert: [\"true\"]}}]\nbaseline: 100ms\ninject: 100ms\nrecovery: 0s\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := run(t, "run", path, "--allow-no-stop", "--seed", "42", "--var", "A=b", "--out", out)
	if code != 0 {
		t.Fatalf("run = %d\n%s\n%s", code, stdout, stderr)
	}
	want := fmt.Sprintf("replay: faultline run %s --seed 42 --var A=b --allow-no-stop", path)
	if !strings.Contains(stdout, want) {
		t.Errorf("output lacks %q:\n%s", want, stdout)
	}
	var res struct{ Flags []string }
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(out, "result.json"))), &res); err != nil || !slices.Equal(res.Flags, []string{"--allow-no-stop"}) {
		t.Errorf("result.json flags = %v (%v), want [--allow-no-stop]", res.Flags, err)
	}
	// The replay runs: without the flag, the file would be refused.
	args := strings.Fields(strings.TrimPrefix(want, "replay: faultline "))
	args = append(args[:len(args)-1], "--out", filepath.Join(t.TempDir(), "again"), "--allow-no-stop")
	if code, _, stderr := run(t, args...); code != 0 {
		t.Errorf("the replay command = %d: %s", code, stderr)
	}
}

// TestStatusSaysWhatARemoteFaultPutInPlace: a remote proxy's toxic shows
// as the toxic it is, not as its undo step.
func TestStatusSaysWhatARemoteFaultPutInPlace(t *testing.T) {
	srv, api := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	if _, err := srv.Create(proxy.ProxyConfig{Name: "db", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:9", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	file := filepath.Join(t.TempDir(), "remote.yaml")
	src := fmt.Sprintf("name: remote\ntargets:\n  db: {proxy: {api: %q, name: db}}\nfaults:\n  - {name: slow db, target: db, latency: {delay: 100ms}}\ninject: 60s\nbaseline: 1s\n", api)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	runner := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", filepath.Join(t.TempDir(), "run"), "--state-dir", stateDir)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	want := regexp.MustCompile(`injected: slow db \(toxic faultline-\S+-slow-db-downstream on proxy db at ` + regexp.QuoteMeta(api) + `\)`)
	var stdout string
	processtest.WaitFor(t, "status to show the toxic", func() bool {
		_, stdout, _ = run(t, "status", "--state-dir", stateDir)
		return want.MatchString(stdout)
	})
	if strings.Contains(stdout, "remove_toxic") {
		t.Errorf("status shows the undo step:\n%s", stdout)
	}
	_ = runner.Process.Signal(syscall.SIGTERM)
	_ = runner.Wait()
}

// A service that speaks only Redis is the subject of an experiment: its
// baseline, a latency condition that breaks under a latency toxic (FAILED),
// and a report whose charts draw the Redis traffic.
func TestRedisOnlyExperiment(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed: make test installs it")
		}
		t.Skip("redis-server is not installed (make test installs it)")
	}
	dir := t.TempDir()
	src := `name: redis-only
targets:
  redis:
    process:
      command: [redis-server, --port, "{port}", --bind, 127.0.0.1, --save, "", --appendonly, "no", --dir, "{run_dir}"]
      ready: tcp://127.0.0.1:{port}
  redis-link: {proxy: {listen: "127.0.0.1:0", upstream: "{redis.addr}"}}
traffic:
  rate: 50/s
  timeout: 2s
  requests:
    - {name: get, redis: {addr: "{redis-link.addr}", command: [GET, basket]}}
steady_state:
  - latency p99 of get < 100ms
baseline: 2s
faults:
  - {name: slow redis, target: redis-link, latency: {delay: 300ms}, duration: 3s}
recovery: 3s
stop_when:
  - error_rate > 90% for 3s
`
	path := filepath.Join(dir, "redis.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	cmd := exec.Command(binary(t), "run", path, "--out", out)
	b, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitFailed {
		t.Fatalf("run = %d, want %d (the latency condition breaks)\n%s", code, cli.ExitFailed, b)
	}
	if !strings.Contains(string(b), "latency p99 of get < 100ms") {
		t.Errorf("the output does not say which condition broke:\n%s", b)
	}
	html, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	// Every chart of the traffic has points: requests, errors and latency.
	series := regexp.MustCompile(`data-series="([^"]+)" data-points="(\d+)"`).FindAllStringSubmatch(string(html), -1)
	drawn := 0
	for _, s := range series {
		if s[2] != "0" {
			drawn++
		}
	}
	if len(series) < 3 || drawn < 3 {
		t.Errorf("report charts: %v, want the traffic's series drawn", series)
	}
}

// A service that speaks no HTTP is the subject of an experiment as an HTTP
// one is: PostgreSQL under SQL traffic, a resolver under DNS lookups, Redis
// under raw TCP and a gRPC server (that the test starts) under health
// checks, each with its conditions on the traffic of that kind, broken by
// the fault or stopped by a stop condition that fires on it.
func TestOtherKindsAsSubjects(t *testing.T) {
	needRealServers(t)
	grpcAddr := grpcHealthServer(t)
	for _, tt := range []struct {
		name, src string
		code      int
		says      string
	}{
		{"sql", `name: sql-subject
targets:
  db:
    process:
      command: ["{self}", shop, postgres, --port, "{port}"]
      ready: tcp://127.0.0.1:{port}
  db-link: {proxy: {listen: "127.0.0.1:0", upstream: "{db.addr}"}}
traffic:
  rate: 30/s
  timeout: 2s
  requests:
    - {name: count, sql: {dsn: "postgres://shop@{db-link.addr}/postgres?sslmode=disable", query: "SELECT count(*) FROM pg_class", max_conns: 4}}
steady_state:
  - latency p99 of count < 150ms
baseline: 2s
faults:
  - {name: slow database, target: db-link, latency: {delay: 400ms}, duration: 3s}
recovery: 3s
stop_when:
  - error_rate of count > 90% for 3s
`, cli.ExitFailed, "latency p99 of count < 150ms"},
		{"dns", `name: dns-subject
targets:
  resolver:
    dns: {records: {payments.shop.test: 127.0.0.1}}
traffic:
  rate: 30/s
  timeout: 1s
  requests:
    - {name: lookup, dns: {server: "{resolver.addr}", name: payments.shop.test, type: A, expect_answer: true}}
steady_state:
  - error_rate of lookup < 1%
baseline: 2s
faults:
  - {name: no answer, target: resolver, dns: {rules: ["payments.*=SERVFAIL"]}, duration: 5s}
recovery: 3s
stop_when:
  - error_rate of lookup > 50% for 1s
`, cli.ExitAborted, "error_rate of lookup > 50% for 1s"},
		{"tcp", `name: tcp-subject
targets:
  redis:
    process:
      command: [redis-server, --port, "{port}", --bind, 127.0.0.1, --save, "", --appendonly, "no", --dir, "{run_dir}"]
      ready: tcp://127.0.0.1:{port}
  redis-link: {proxy: {listen: "127.0.0.1:0", upstream: "{redis.addr}"}}
traffic:
  rate: 30/s
  timeout: 1s
  requests:
    - {name: ping, tcp: {addr: "{redis-link.addr}", send: "PING\r\n", expect: "+PONG"}}
steady_state:
  - error_rate of ping < 1%
baseline: 2s
faults:
  - {name: redis gone, target: redis-link, down: {}, duration: 5s}
recovery: 3s
stop_when:
  - error_rate of ping > 50% for 1s
`, cli.ExitAborted, "error_rate of ping > 50% for 1s"},
		{"grpc", `name: grpc-subject
targets:
  api-link: {proxy: {listen: "127.0.0.1:0", upstream: "GRPC_ADDR"}}
traffic:
  rate: 30/s
  timeout: 2s
  requests:
    - {name: health, grpc: {target: "{api-link.addr}", service: shop}}
steady_state:
  - latency p99 of health < 150ms
  - error_rate of health < 1%
baseline: 2s
faults:
  - {name: slow api, target: api-link, latency: {delay: 400ms}, duration: 3s}
recovery: 3s
stop_when:
  - error_rate of health > 90% for 3s
`, cli.ExitFailed, "latency p99 of health < 150ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.name+".yaml")
			src := strings.ReplaceAll(tt.src, "GRPC_ADDR", grpcAddr)
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "run")
			cmd := exec.Command(binary(t), "run", path, "--out", out)
			b, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code || !strings.Contains(string(b), tt.says) {
				t.Fatalf("run = %d, want %d saying %q\n%s", code, tt.code, tt.says, b)
			}
			var res record.Result
			data, err := os.ReadFile(filepath.Join(out, "result.json"))
			if err == nil {
				err = json.Unmarshal(data, &res)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range res.Faults {
				if f.RevertedAt == nil {
					t.Errorf("fault %s not reverted", f.Name)
				}
			}
			measured := false
			for _, tr := range res.Traffic {
				measured = measured || tr.Phase == "baseline" && tr.Requests > 0 && tr.Errors == 0
			}
			if !measured {
				t.Errorf("no clean baseline traffic of the kind: %+v", res.Traffic)
			}
		})
	}
}

// grpcHealthServer starts a gRPC server on loopback whose standard health
// service says "shop" is SERVING, stopped when the test ends; it returns
// its address.
func grpcHealthServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("shop", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// faultline run --metrics-listen serves the run's phase, its faults and
// its probes to Prometheus while it runs; off loopback it needs
// --allow-remote.
func TestRunMetricsListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.yaml")
	src := `name: metrics
targets:
  link: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}
steady_state:
  - {name: up, probe: "tcp {link.addr}"}
baseline: 1s
faults: [{name: slow link, target: link, latency: {delay: 1s}, duration: 30s}]
recovery: 2s
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "run", path, "--allow-no-stop", "--metrics-listen", "0.0.0.0:0", "--dry-run"); code != cli.ExitUsage || !strings.Contains(errOut, "off loopback") {
		t.Errorf("--metrics-listen off loopback = %d %q, want %d and why", code, errOut, cli.ExitUsage)
	}
	addr := freeAddr(t)
	cmd := exec.Command(binary(t), "run", path, "--allow-no-stop", "--metrics-listen", addr, "--out", filepath.Join(dir, "run"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var page string
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	processtest.WaitFor(t, "the fault in the metrics", func() bool {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return strings.Contains(page, `faultline_fault_active{action="latency",experiment="metrics",fault="slow link"`) &&
			regexp.MustCompile(`faultline_fault_active\{[^}]*fault="slow link"[^}]*\} 1`).MatchString(page)
	})
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`faultline_run_phase\{[^}]*phase="inject"[^}]*\} 1`),
		regexp.MustCompile(`faultline_run_phase\{[^}]*phase="baseline"[^}]*\} 0`),
		regexp.MustCompile(`faultline_probe_success_ratio\{[^}]*probe="up"[^}]*\} 1`),
		regexp.MustCompile(`faultline_fault_active\{[^}]*target="link"[^}]*\} 1`),
	} {
		if !want.MatchString(page) {
			t.Errorf("metrics lack %s:\n%s", want, page)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT) // the run rolls back and ends
	_ = cmd.Wait()
}

// A run records what runs recorded before the middle layer's redesign: the
// run directory of examples/slow-api.yaml recorded then (the report's test
// data) names no field of result.json, of a journal event or of a sample
// that a run of the same experiment now leaves out.
func TestRunRecordsTheFieldsItDid(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "slow-api.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The same experiment with a shorter recovery: the fields are the same.
	short := strings.Replace(string(src), "recovery: 10s", "recovery: 3s", 1)
	if short == string(src) {
		t.Fatal("examples/slow-api.yaml has no 'recovery: 10s' to shorten")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "slow-api.yaml")
	if err := os.WriteFile(path, []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	cmd := exec.Command(binary(t), "run", path, "--seed", "12345", "--out", out) // {self} is the binary
	if b, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != cli.ExitFailed {
		t.Fatalf("run = %d, want %d (FAILED, as recorded)\n%s", cmd.ProcessState.ExitCode(), cli.ExitFailed, b)
	}
	recorded := filepath.Join("..", "..", "report", "testdata", "recorded")
	for _, file := range []string{"result.json", "journal.jsonl", "samples.jsonl"} {
		was, now := fieldPaths(t, filepath.Join(recorded, file)), fieldPaths(t, filepath.Join(out, file))
		if len(was) == 0 {
			t.Fatalf("%s: no fields recorded", file)
		}
		for p := range was {
			if !now[p] {
				t.Errorf("%s: a new run has no %s, which runs recorded before", file, p)
			}
		}
	}
}

// fieldPaths reads a JSON file or a JSON Lines one and returns the path
// of every field in it, arrays as [] ("faults[].hit"); a journal event's
// fields are prefixed by its type ("intent:undo.kind").
func fieldPaths(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := strings.TrimPrefix(prefix+"."+k, ".")
				paths[p] = true
				walk(p, e)
			}
		case []any:
			for _, e := range v {
				walk(prefix+"[]", e)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for line := 1; ; line++ {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: value %d: %v", path, line, err)
		}
		m, ok := v.(map[string]any)
		typ, _ := m["type"].(string)
		if !ok || !strings.HasSuffix(path, "journal.jsonl") {
			walk("", v)
			continue
		}
		for k, e := range m {
			paths[typ+":"+k] = true
			walk(typ+":"+k, e)
		}
	}
	return paths
}
