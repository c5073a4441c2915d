package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/plan"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/runner"
)

var svc string // the test service binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runner-test")
	if err != nil {
		panic(err)
	}
	svc = filepath.Join(dir, "svc")
	if out, err := exec.Command("go", "build", "-o", svc, "./testdata/svc").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build svc: %v\n%s", err, out))
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// slowDependency is an experiment: a front calling dep through a proxy
// that adds 1 s of latency for 2 s.
func slowDependency(t *testing.T, frontTimeout string) *experiment.Experiment {
	t.Helper()
	src := fmt.Sprintf(`
name: slow-dependency
hypothesis: The front stays fast while the dependency is slow.
targets:
  dep:
    process:
      command: [%[1]s, -mode, dep, -listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
  dep-link:
    proxy: {listen: "127.0.0.1:0", upstream: "{dep.addr}"}
  front:
    process:
      command: [%[1]s, -mode, front, -listen, "127.0.0.1:{port}", -dep, "http://{dep-link.addr}/", -timeout, "%[2]s"]
      ready: http://127.0.0.1:{port}/health
traffic:
  rate: 20/s
  timeout: 3s
  requests: ["GET http://{front.addr}/work"]
steady_state:
  - error_rate < 5%%
  - latency p99 < 500ms
  - probe: GET http://{front.addr}/health
    expect: 200
baseline: 1s
faults:
  - name: slow dependency
    target: dep-link
    latency: {delay: 1s}
    start: 200ms
    duration: 2s
recovery: 4s
stop_when:
  - error_rate > 90%% for 2s
`, svc, frontTimeout)
	x, err := experiment.Parse("slow.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// build is a plan of x with seed (0: picked).
func build(t *testing.T, x *experiment.Experiment, seed int64) *plan.Plan {
	t.Helper()
	p, err := plan.Build(x, plan.Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runFast(t *testing.T, ctx context.Context, x *experiment.Experiment) *runner.Result {
	t.Helper()
	res, err := runner.Run(ctx, build(t, x, 7), runner.Options{OutDir: filepath.Join(t.TempDir(), "run"), Tick: 200 * time.Millisecond, RecoveryWindow: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestVerdictBothWays(t *testing.T) {
	t.Run("front with a timeout passes", func(t *testing.T) {
		res := runFast(t, context.Background(), slowDependency(t, "100ms"))
		if res.Verdict != runner.Passed {
			t.Fatalf("verdict %s (%v), want PASSED\nchecks: %+v", res.Verdict, res.Reasons, res.Checks)
		}
		if res.TimeToRecover == nil {
			t.Fatal("PASSED without a time to recover")
		}
		f := res.Faults[0]
		if f.InjectedAt == nil || f.RevertedAt == nil || len(f.Hit) == 0 {
			t.Fatalf("fault record %+v, want injected, reverted, with what it hit", f)
		}
	})
	t.Run("front without a timeout fails", func(t *testing.T) {
		res := runFast(t, context.Background(), slowDependency(t, "0"))
		if res.Verdict != runner.Failed {
			t.Fatalf("verdict %s (%v), want FAILED", res.Verdict, res.Reasons)
		}
		broken := false
		for _, c := range res.Checks {
			if c.Phase == "inject" && c.Condition == "latency p99 < 500ms" && !c.Held && c.Value != nil && *c.Value >= 0.9 {
				broken = true
			}
		}
		if !broken {
			t.Fatalf("no broken latency check with the delay in it: %+v", res.Checks)
		}
	})
}

func TestStopConditionAbortsAndRollsBack(t *testing.T) {
	x := slowDependency(t, "0")
	// Take the dependency's proxy down instead: every request fails.
	x.Faults[0].Action = experiment.Down{}
	x.Faults[0].Duration = 0
	x.Inject = 20 * time.Second
	x.StopWhen[0].For = 600 * time.Millisecond
	start := time.Now()
	res := runFast(t, context.Background(), x)
	if res.Verdict != runner.Aborted {
		t.Fatalf("verdict %s (%v), want ABORTED", res.Verdict, res.Reasons)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatalf("the run took %v: the stop condition did not cut the 20 s inject phase short", time.Since(start))
	}
	if f := res.Faults[0]; f.RevertedAt == nil {
		t.Fatalf("fault not reverted after the stop condition: %+v", f)
	}
}

func stopExperiment(t *testing.T, marker string) *experiment.Experiment {
	t.Helper()
	src := fmt.Sprintf(`
name: freeze
targets:
  workers: {process: {match: %q}}
faults:
  - name: freeze the workers
    target: workers
    stop: {}
inject: 30s
recovery: 1s
`, marker)
	x, err := experiment.Parse("freeze.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestInterruptRevertsFaults(t *testing.T) {
	cmd, marker := processtest.Sleepers(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *runner.Result)
	go func() {
		res, err := runner.Run(ctx, build(t, stopExperiment(t, marker), 0), runner.Options{OutDir: filepath.Join(t.TempDir(), "run"), Tick: 100 * time.Millisecond})
		if err != nil {
			panic(err)
		}
		done <- res
	}()
	processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, cmd.Process.Pid) })
	cancel() // as Ctrl-C does
	res := <-done
	if res.Verdict != runner.Aborted {
		t.Fatalf("verdict %s, want ABORTED", res.Verdict)
	}
	if processtest.Stopped(t, cmd.Process.Pid) {
		t.Fatal("processes still stopped after the interrupted run returned")
	}
}

// TestKillHalfTheInstancesAndRestart kills PERCENT(50) of two launched
// instances; revert must restart the killed one on its own port.
func TestKillHalfTheInstancesAndRestart(t *testing.T) {
	src := fmt.Sprintf(`
name: kill-half
targets:
  web:
    process:
      command: [%s, -mode, dep, -listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
      instances: 2
    tags: {zone: [a, b]}
faults:
  - name: kill half
    target: web
    kill: {signal: SIGKILL}
    select: PERCENT(50)
    duration: 500ms
  - name: freeze zone b
    target: web
    stop: {}
    select: {tags: {zone: b}}
    start: 700ms
    duration: 300ms
inject: 1200ms
baseline: 200ms
recovery: 1s
`, svc)
	x, err := experiment.Parse("kill.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	res := runFast(t, context.Background(), x)
	if res.Verdict != runner.Passed {
		t.Fatalf("verdict %s (%v), want PASSED (the killed instance restarted)", res.Verdict, res.Reasons)
	}
	kill, freeze := res.Faults[0], res.Faults[1]
	if len(kill.Hit) != 1 || !strings.Contains(kill.Hit[0], "web[") || kill.RevertedAt == nil {
		t.Fatalf("kill fault %+v, want one instance hit and reverted (restarted)", kill)
	}
	if len(freeze.Hit) != 1 || !strings.Contains(freeze.Hit[0], "web[1]") {
		t.Fatalf("freeze of zone b hit %v, want web[1] (zone b by round-robin)", freeze.Hit)
	}
}

func TestLaunchedProcessExitingOnItsOwnIsReported(t *testing.T) {
	src := `
name: crash
targets:
  crash:
    process:
      command: [sh, -c, "echo starting; sleep 0.3; exit 7"]
faults:
  - {name: nothing, exec: {inject: ["true"], revert: ["true"]}, duration: 600ms}
baseline: 100ms
recovery: 1s
`
	x, err := experiment.Parse("crash.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	res, err := runner.Run(context.Background(), build(t, x, 1), runner.Options{OutDir: dir, Tick: 100 * time.Millisecond, RecoveryWindow: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Reasons, "\n"), "crash[0]") || !strings.Contains(strings.Join(res.Reasons, "\n"), "exit status 7") {
		t.Fatalf("reasons %q do not report the exit", res.Reasons)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "processes.log"))
	if !strings.Contains(string(log), "crash[0] starting") {
		t.Fatalf("processes.log = %q, want its lines prefixed with the instance", log)
	}
}

// TestFaultsKeepTheirScheduleBetweenTicks: with the default 1 s tick, a
// fault due at 300 ms for 400 ms must not wait for the next tick.
func TestFaultsKeepTheirScheduleBetweenTicks(t *testing.T) {
	src := `
name: schedule
targets:
  link: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}
faults:
  - {name: brief, target: link, latency: {delay: 1ms}, start: 300ms, duration: 400ms}
inject: 2s
baseline: 100ms
recovery: 1s
`
	x, err := experiment.Parse("schedule.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := runner.Run(context.Background(), build(t, x, 1), runner.Options{OutDir: filepath.Join(t.TempDir(), "run")})
	if err != nil {
		t.Fatal(err)
	}
	var injectStart time.Time
	for _, p := range res.Phases {
		if p.Name == "inject" {
			injectStart = time.Time(p.Start)
		}
	}
	f := res.Faults[0]
	if f.InjectedAt == nil || f.RevertedAt == nil {
		t.Fatalf("fault %+v not injected and reverted", f)
	}
	// Lower bounds are the schedule; the upper ones only say "before the
	// next 1 s tick", generously.
	in := time.Time(*f.InjectedAt).Sub(injectStart)
	out := time.Time(*f.RevertedAt).Sub(injectStart)
	if in < 300*time.Millisecond || in >= 900*time.Millisecond {
		t.Errorf("injected %v into the inject phase, want 300ms and before the 1s tick", in)
	}
	if out < 700*time.Millisecond || out >= 1300*time.Millisecond {
		t.Errorf("reverted %v into the inject phase, want 700ms (300ms + 400ms) and well before a tick's worth more", out)
	}
}

// What only setup knows is journaled before anything is injected: the
// port each launched instance was given and where each embedded proxy
// listens, as the run's progress said them.
func TestSetupJournalsWhatItResolved(t *testing.T) {
	src := fmt.Sprintf(`
name: resolved
targets:
  dep:
    process:
      command: [%s, -mode, dep, -listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
  link: {proxy: {listen: "127.0.0.1:0", upstream: "{dep.addr}"}}
faults:
  - {name: brief, target: link, latency: {delay: 1ms}}
inject: 200ms
baseline: 100ms
recovery: 1s
`, svc)
	x, err := experiment.Parse("resolved.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	var progress bytes.Buffer
	if _, err := runner.Run(context.Background(), build(t, x, 1), runner.Options{OutDir: out, Progress: &progress, Tick: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	events, err := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	resolved, injected := -1, -1
	for i, e := range events {
		switch {
		case e.Type == journal.Note && e.Name == "resolved":
			resolved = i
		case e.Type == journal.Intent && e.Name == "brief" && injected < 0:
			injected = i
		}
	}
	if resolved < 0 || injected < 0 || resolved > injected {
		t.Fatalf("journal %+v: want a resolved note before the fault's intent", events)
	}
	listen := regexp.MustCompile(`proxy link listening on (127\.0\.0\.1:\d+) -> (127\.0\.0\.1:\d+)`).FindStringSubmatch(progress.String())
	if listen == nil {
		t.Fatalf("progress does not say where the proxy listens:\n%s", &progress)
	}
	if want := "dep[0]=" + listen[2] + " link=" + listen[1]; events[resolved].Message != want {
		t.Errorf("resolved note %q, want %q", events[resolved].Message, want)
	}
}

// On a live terminal each tick's line is redrawn in place (carriage
// return, clear to the end of the line, no newline), and an event clears
// it and stays on a line of its own; with a prefix on every line.
func TestLiveProgress(t *testing.T) {
	var out bytes.Buffer
	x := slowDependency(t, "100ms")
	_, err := runner.Run(context.Background(), build(t, x, 7), runner.Options{OutDir: filepath.Join(t.TempDir(), "run"),
		Tick: 200 * time.Millisecond, RecoveryWindow: time.Second, Progress: &out, Live: true, Prefix: "[slow] "})
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	ticks := regexp.MustCompile(`\r\x1b\[K\[slow\] \d\d:\d\d:\d\d baseline +\S+ left [^\n\r]*`).FindAllString(text, -1)
	if len(ticks) < 2 {
		t.Fatalf("want baseline ticks redrawn in place, got:\n%q", text)
	}
	// Requests sent and not answered are on the line: a hang is seen.
	for _, tick := range ticks {
		if !regexp.MustCompile(`req/s done, \d+ in flight`).MatchString(tick) {
			t.Errorf("a tick's line does not say how many requests are in flight: %q", tick)
		}
	}
	// A tick line is ended only by the next redraw or by an event that
	// clears it, never by a newline of its own.
	if regexp.MustCompile(`faults: [^\n\r]*\n`).MatchString(text) {
		t.Errorf("a tick's line ends with a newline:\n%q", text)
	}
	if !strings.Contains(text, "\r\x1b[K[slow] ") || !regexp.MustCompile(`(?m)^\[slow\] \d\d:\d\d:\d\d phase inject$`).MatchString(strings.ReplaceAll(text, "\r\x1b[K", "\n")) {
		t.Errorf("the inject phase is not an event line of its own:\n%q", text)
	}
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("the output does not end its last line:\n%q", text)
	}
}

// cancelOn cancels a run's context once progress lines have held what n
// times.
type cancelOn struct {
	what   string
	n      int
	cancel context.CancelFunc
}

func (c *cancelOn) Write(b []byte) (int, error) {
	if strings.Contains(string(b), c.what) {
		if c.n--; c.n <= 0 {
			c.cancel()
		}
	}
	return len(b), nil
}

// An interrupted run still reports what its checks saw during injection,
// as one a stop condition ended does.
func TestInterruptKeepsTheInjectChecks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := runner.Run(ctx, build(t, slowDependency(t, "0"), 7), runner.Options{OutDir: filepath.Join(t.TempDir(), "run"),
		Tick: 200 * time.Millisecond, RecoveryWindow: time.Second, Progress: &cancelOn{"inject   ", 4, cancel}}) // 4 ticks into the injection, the fault started
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != runner.Aborted {
		t.Fatalf("verdict %s (%v), want ABORTED", res.Verdict, res.Reasons)
	}
	var inject []string
	for _, c := range res.Checks {
		if c.Phase == "inject" {
			inject = append(inject, c.Condition)
		}
	}
	if len(inject) != 3 {
		t.Fatalf("inject checks %q, want the 3 steady-state checks judged; all checks: %+v", inject, res.Checks)
	}
}

// A probe that the interrupt itself cuts short is not a failure the run
// saw: an interrupted run does not report a broken steady state for it.
func TestInterruptedProbeIsNotAFailure(t *testing.T) {
	cmd, marker := processtest.Sleepers(t)
	x := stopExperiment(t, marker)
	x.SteadyState = append(x.SteadyState, experiment.Check{
		Probe:  &experiment.Probe{Kind: "command", Command: []string{"sleep", "0.4"}, Expect: "0"},
		Phases: []string{"baseline", "inject", "recovery"},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *runner.Result)
	go func() {
		res, err := runner.Run(ctx, build(t, x, 0), runner.Options{OutDir: filepath.Join(t.TempDir(), "run"), Tick: 100 * time.Millisecond})
		if err != nil {
			panic(err)
		}
		done <- res
	}()
	processtest.WaitFor(t, "the stop fault", func() bool { return processtest.Stopped(t, cmd.Process.Pid) })
	cancel() // most likely while a 0.4 s probe runs
	res := <-done
	for _, c := range res.Checks {
		if c.Phase == "inject" && !c.Held && c.Detail != "the probe did not run" {
			t.Errorf("the interrupted run reports a broken probe: %+v", c)
		}
	}
	if res.Verdict != runner.Aborted || len(res.Reasons) != 1 {
		t.Errorf("verdict %s %q, want ABORTED for the interrupt alone", res.Verdict, res.Reasons)
	}
}

// TestMaxDurationCapsTheRunAtRunTime: a run is stopped at max_duration
// even when its phases add up to less (here setup waits for a slow start).
func TestMaxDurationCapsTheRunAtRunTime(t *testing.T) {
	src := fmt.Sprintf(`
name: capped
targets:
  slow:
    process:
      command: [sh, -c, "sleep 5; exec %s -mode dep -listen 127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
  link: {proxy: {listen: "127.0.0.1:0", upstream: "{slow.addr}"}}
baseline: 300ms
inject: 300ms
recovery: 0s
max_duration: 1s
faults: [{name: down, target: link, down: {}}]
traffic: {rate: 5/s, requests: ["GET http://{link.addr}/"]}
stop_when: [error_rate > 90%%]
`, svc)
	x, err := experiment.Parse("capped.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := runFast(t, context.Background(), x)
	if res.Verdict != runner.Aborted || !strings.Contains(strings.Join(res.Reasons, "; "), "max_duration (1s)") {
		t.Fatalf("verdict %s (%v), want ABORTED for max_duration", res.Verdict, res.Reasons)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the run took %v, past its max_duration of 1s and the start's 5s sleep", took)
	}
	if res.Faults[0].InjectedAt != nil {
		t.Errorf("fault injected in a run stopped during setup: %+v", res.Faults[0])
	}
}

// TestCommandProbeReferencesAndOutput: a command probe gets its
// {NAME.port} filled in like any other field, and one that fails says
// why in the check's detail, in the command's own words.
func TestCommandProbeReferencesAndOutput(t *testing.T) {
	exp := func(probe string) *experiment.Experiment {
		src := fmt.Sprintf(`
name: probes
targets:
  dep:
    process:
      command: [%s, -mode, dep, -listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
steady_state:
  - probe: {command: %s}
baseline: 400ms
inject: 400ms
recovery: 1s
faults: [{name: nothing, exec: {inject: ["true"], revert: ["true"]}}]
`, svc, probe)
		x, err := experiment.Parse("probes.yaml", []byte(src), experiment.Options{AllowNoStop: true})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	res := runFast(t, context.Background(), exp(`[sh, -c, "test {dep.port} -gt 0 && test -n '{dep.addr}'"]`))
	if res.Verdict != runner.Passed {
		t.Errorf("probe with {dep.port}: verdict %s (%v), want PASSED; checks %+v", res.Verdict, res.Reasons, res.Checks)
	}
	res = runFast(t, context.Background(), exp(`[sh, -c, "echo cannot reach {dep.addr} >&2; exit 3"]`))
	if res.Verdict != runner.Error || len(res.Checks) == 0 {
		t.Fatalf("failing probe: verdict %s (%v), want ERROR with the baseline's check", res.Verdict, res.Reasons)
	}
	if d := res.Checks[0].Detail; !strings.Contains(d, "exit status 3: cannot reach 127.0.0.1:") {
		t.Errorf("check detail %q, want the exit status and what the command said, with the address filled in", d)
	}
}

// TestInterruptedExecFaultIsReverted: an interrupt while the inject
// command runs kills its whole group at once (the shell's sleep too) and
// runs the revert command, since what the inject did is not known.
func TestInterruptedExecFaultIsReverted(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "injected")
	src := fmt.Sprintf(`
name: exec
faults:
  - {name: e, exec: {inject: [sh, -c, "touch %[1]s; sleep 30"], revert: [rm, -f, %[1]s]}, duration: 5s}
baseline: 200ms
recovery: 1s
`, mark)
	x, err := experiment.Parse("exec.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(mark); err == nil {
				cancel() // Ctrl-C while the inject command runs
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	res := runFast(t, ctx, x)
	if res.Verdict != runner.Aborted {
		t.Errorf("verdict %s (%v), want ABORTED", res.Verdict, res.Reasons)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Errorf("%s is still there: the revert command did not run", mark)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the interrupted run took %v: it waited for the inject command's sleep", took)
	}
}

// TestAHangIsSeenBeforeTheTimeout: requests that hang count by their age
// while they hang, so a stop condition on latency fires during the hang,
// long before the client's timeout would end them.
func TestAHangIsSeenBeforeTheTimeout(t *testing.T) {
	src := fmt.Sprintf(`
name: hang
targets:
  dep:
    process:
      command: [%s, -mode, dep, -listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
  link: {proxy: {listen: "127.0.0.1:0", upstream: "{dep.addr}"}}
traffic:
  rate: 20/s
  timeout: 60s
  requests: ["GET http://{link.addr}/"]
baseline: 1s
faults: [{name: black hole, target: link, timeout: {timeout: 0}, direction: upstream, duration: 50s}]
stop_when: [latency p99 > 1s for 1s]
recovery: 5s
`, svc)
	x, err := experiment.Parse("hang.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := runFast(t, context.Background(), x)
	if res.Verdict != runner.Aborted {
		t.Fatalf("verdict %s (%v), want ABORTED by the stop condition", res.Verdict, res.Reasons)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the stop condition fired after %v: the hang was seen only when the 60 s timeout ended it", took)
	}
	fired := false
	for _, c := range res.Checks {
		fired = fired || c.Fired && strings.Contains(c.Condition, "latency p99")
	}
	if !fired {
		t.Errorf("no fired latency check in %+v", res.Checks)
	}
}

// A journal that stops taking lines in the middle of a run (a full disk)
// makes the run's verdict ERROR, with the lines lost counted: a fault
// whose intent cannot be written is not injected, and the one in place is
// still reverted. Needs root, for a file system small enough to fill.
func TestJournalLostLinesMakeAnError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	vol := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", vol).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", vol).Run() })
	// The second fault's intent is longer than a page, so that it needs
	// space the first fault has taken.
	src := fmt.Sprintf(`
name: full-disk
faults:
  - name: fill the disk
    exec:
      inject: [sh, -c, 'head -c 1048576 /dev/zero > "$1" 2>/dev/null; true', sh, "{run_dir}/fill"]
      revert: [rm, -f, "{run_dir}/fill"]
    duration: 600ms
  - name: unjournaled
    exec: {inject: [touch, "{run_dir}/made"], revert: ["true", %q]}
    start: 200ms
    duration: 200ms
baseline: 100ms
recovery: 300ms
`, strings.Repeat("x", 6000))
	x, err := experiment.Parse("full.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(vol, "run")
	res, err := runner.Run(context.Background(), build(t, x, 1), runner.Options{OutDir: dir, Tick: 100 * time.Millisecond, RecoveryWindow: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != runner.Error || !strings.Contains(strings.Join(res.Reasons, "\n"), "the journal lost") {
		t.Errorf("verdict %s, reasons %q: want ERROR, the journal's lost lines said", res.Verdict, res.Reasons)
	}
	if _, err := os.Stat(filepath.Join(dir, "made")); !os.IsNotExist(err) {
		t.Errorf("a fault whose intent the journal did not take was injected: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "fill")); !os.IsNotExist(err) {
		t.Errorf("the fault in place was not reverted: %v", err)
	}
}

// A probe's success and time to answer are metrics of conditions: a stop
// condition on probe_success fires when the probe fails (the run is
// aborted, the fault reverted), and a steady-state condition on
// probe_latency against the baseline breaks when the probe slows down.
func TestProbeMetricsInConditions(t *testing.T) {
	for _, tt := range []struct {
		name, fault, steady, stop, verdict, broken string
	}{
		{"stop on probe_success", "down: {}", "", "stop_when: [probe_success of health < 50% for 1s]", runner.Aborted, "probe_success of health < 50% for 1s"},
		{"probe_latency against the baseline", "latency: {delay: 300ms}", "  - probe_latency p99 of health < 3x baseline", "", runner.Failed, "probe_latency p99 of health < 3x baseline"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf(`
name: probe-metrics
targets:
  dep:
    process:
      command: [%s, -mode, dep, -listen, "127.0.0.1:{port}"]
      ready: http://127.0.0.1:{port}/health
  dep-link:
    proxy: {listen: "127.0.0.1:0", upstream: "{dep.addr}"}
steady_state:
  - name: health
    probe: GET http://{dep-link.addr}/health
    expect: 200
%s
%s
baseline: 1s
faults: [{name: fault, target: dep-link, %s, duration: 3s}]
recovery: 2s
`, svc, tt.steady, tt.stop, tt.fault)
			x, err := experiment.Parse("probes.yaml", []byte(src), experiment.Options{AllowNoStop: true})
			if err != nil {
				t.Fatalf("%v\n%s", err, src)
			}
			res := runFast(t, context.Background(), x)
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%v), want %s; checks %+v", res.Verdict, res.Reasons, tt.verdict, res.Checks)
			}
			if !slices.ContainsFunc(res.Checks, func(c runner.CheckRecord) bool {
				return c.Condition == tt.broken && c.Phase == "inject" && (c.Fired || !c.Held)
			}) {
				t.Errorf("no inject check of %q broke or fired: %+v", tt.broken, res.Checks)
			}
			for _, f := range res.Faults {
				if f.RevertedAt == nil {
					t.Errorf("fault %s not reverted", f.Name)
				}
			}
		})
	}
}

// Two runs of the same plan started in the same second, with the same
// seed, get run ids of their own: the ids name what a run creates on the
// host (network namespaces, nft tables), and a second run that took the
// first's would remove what the first still uses.
func TestRunsInTheSameSecondHaveTheirOwnIDs(t *testing.T) {
	x, err := experiment.Parse("ids.yaml", []byte(`
name: ids
targets:
  link: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:9"}}
faults:
  - {name: brief, target: link, latency: {delay: 1ms}}
inject: 100ms
baseline: 50ms
recovery: 1s
`), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	p := build(t, x, 7)
	// start is each run's RunStart event.
	start := func(dir string) journal.Event {
		events, err := journal.ReadFile(filepath.Join(dir, "journal.jsonl"))
		if err != nil || len(events) == 0 {
			t.Fatalf("journal of %s: %d events, %v", dir, len(events), err)
		}
		return events[0]
	}
	for attempt := 0; attempt < 5; attempt++ {
		dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
		var wg sync.WaitGroup
		for _, dir := range dirs {
			wg.Go(func() {
				if _, err := runner.Run(context.Background(), p, runner.Options{OutDir: dir, Tick: 50 * time.Millisecond}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		a, b := start(dirs[0]), start(dirs[1])
		if a.Type != journal.RunStart || b.Type != journal.RunStart || a.Run == "" {
			t.Fatalf("first events %+v and %+v: want the runs' starts, with their ids", a, b)
		}
		if a.Time.Unix() != b.Time.Unix() {
			continue // a second apart: try again for two in the same second
		}
		if a.Run == b.Run {
			t.Fatalf("two runs in the same second with seed 7 share the id %q", a.Run)
		}
		return
	}
	t.Fatal("no two runs started in the same second in 5 attempts")
}
