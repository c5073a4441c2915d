package monkey_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/monkey"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/process/processtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock advances only when the monkey sleeps: a week passes in
// milliseconds.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.now = c.now.Add(d)
	return nil
}

// group starts n processes whose command line carries marker; the first
// optedIn have CHAOS_MONKEY=enabled in their environment.
func group(t *testing.T, n, optedIn int) (marker string, cmds []*exec.Cmd) {
	t.Helper()
	marker = fmt.Sprintf("monkey-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i := range n {
		cmd := exec.Command("sh", "-c", "sleep 300; :", marker)
		cmd.Env = append(os.Environ(), "CHAOS_MONKEY=disabled")
		if i < optedIn {
			cmd.Env = append(os.Environ(), "CHAOS_MONKEY=enabled")
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		cmds = append(cmds, cmd)
	}
	// Between fork and exec a process still has its parent's command line:
	// the shells start as copies of the test binary, and each shell's
	// sleep starts as a copy of the shell, marker included. Wait until
	// every shell has its sleeping child and exactly n processes name
	// marker, or the monkey could count members that are not there.
	re := regexp.MustCompile(regexp.QuoteMeta(marker))
	processtest.WaitFor(t, "the shells and their sleeping children", func() bool {
		for _, cmd := range cmds {
			if tree, err := process.Tree(cmd.Process.Pid); err != nil || len(tree) != 2 {
				return false
			}
		}
		pids, err := process.Match(re)
		return err == nil && len(pids) == n
	})
	return marker, cmds
}

func parse(t *testing.T, src string) *monkey.Config {
	t.Helper()
	m, err := monkey.Parse("monkey.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Monday 30 November 2026, midnight in Paris.
func monday(t *testing.T) time.Time {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return time.Date(2026, 11, 30, 0, 0, 0, 0, loc)
}

func TestScheduleGapsAndCaps(t *testing.T) {
	marker, _ := group(t, 3, 3)
	m := parse(t, fmt.Sprintf(`
leashed: true
schedule: {timezone: Europe/Paris, days: [mon, tue, wed, thu, fri], hours: "09:00-17:00", mean_time_between: 30m, min_gap: 20m, daily_cap: 3}
groups:
  workers: {process: {match: %q}}
`, marker))
	start := monday(t)
	clock := &fakeClock{now: start}
	ds, err := monkey.Run(context.Background(), m, monkey.Options{Clock: clock, Seed: 7, Until: start.Add(14 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	perDay := map[string]int{}
	var last time.Time
	for _, d := range ds {
		local := d.At.In(m.Location)
		if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday || local.Hour() < 9 || local.Hour() >= 17 {
			t.Errorf("decision outside the schedule: %s", local)
		}
		if !last.IsZero() && d.At.Sub(last) < 20*time.Minute {
			t.Errorf("decisions %s and %s are closer than min_gap", last, d.At)
		}
		if !strings.HasPrefix(d.Action, "leashed") || d.PID == 0 {
			t.Errorf("leashed monkey decided %+v", d)
		}
		perDay[local.Format("2006-01-02")]++
		last = d.At
	}
	// Eight scheduled hours with a mean of 30 minutes between: the cap of
	// 3 is reached every weekday of the two weeks.
	if len(perDay) != 10 {
		t.Errorf("decisions on %d days, want the 10 weekdays: %v", len(perDay), perDay)
	}
	for day, n := range perDay {
		if n != 3 {
			t.Errorf("%s: %d decisions, want the daily cap of 3", day, n)
		}
	}
	// The same seed decides the same.
	again, _ := monkey.Run(context.Background(), m, monkey.Options{Clock: &fakeClock{now: start}, Seed: 7, Until: start.Add(14 * 24 * time.Hour)})
	if fmt.Sprint(again) != fmt.Sprint(ds) {
		t.Errorf("same seed, different decisions:\n%v\n%v", ds, again)
	}
}

func alive(cmd *exec.Cmd) bool { return syscall.Kill(cmd.Process.Pid, 0) == nil && !exited(cmd) }

func exited(cmd *exec.Cmd) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	return err != nil || strings.Contains(string(b), ") Z ")
}

func TestTerminatesOneOptedInProcess(t *testing.T) {
	marker, cmds := group(t, 3, 2)
	m := parse(t, fmt.Sprintf(`
schedule: {timezone: UTC, days: [mon], hours: "00:00-24:00", mean_time_between: 1m, min_gap: 0s, daily_cap: 1}
groups:
  workers:
    process: {match: %q}
    env: {CHAOS_MONKEY: enabled}
`, marker))
	dir := t.TempDir()
	j, err := journal.Create(filepath.Join(dir, "monkey.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	start := monday(t).UTC().Add(time.Hour) // Monday, 00:00 UTC
	ds, err := monkey.Run(context.Background(), m, monkey.Options{Clock: &fakeClock{now: start}, Seed: 1, Journal: j, Until: start.Add(3 * time.Hour)})
	j.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Action != "terminated" {
		t.Fatalf("decisions: %+v", ds)
	}
	for _, cmd := range cmds {
		if cmd.Process.Pid == ds[0].PID {
			processtest.WaitFor(t, "the victim gone", func() bool { return !alive(cmd) })
		}
	}
	killed := 0
	for i, cmd := range cmds {
		if !alive(cmd) {
			killed++
			if i == 2 {
				t.Error("killed the process that did not opt in")
			}
		}
	}
	if killed != 1 {
		t.Errorf("%d processes gone, want 1", killed)
	}
	events, _ := journal.ReadFile(filepath.Join(dir, "monkey.jsonl"))
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Type)
	}
	if got := strings.Join(kinds, ","); !strings.Contains(got, "intent,done,undone,note") || !journal.Clean(events) {
		t.Errorf("journal: %s", got)
	}
}

// closingClock is a fakeClock that closes the monkey's journal the first
// time the monkey reads the time, once it has journaled its start: a disk
// that fails while the monkey runs.
type closingClock struct {
	fakeClock
	j *journal.Writer
}

func (c *closingClock) Now() time.Time {
	if c.j != nil {
		_ = c.j.Close()
		c.j = nil
	}
	return c.fakeClock.Now()
}

// Journal first: a termination whose intent cannot be written is not made,
// and the decision says why; a monkey whose journal cannot take its start
// does not run.
func TestNoTerminationWithoutItsJournal(t *testing.T) {
	marker, cmds := group(t, 2, 2)
	m := parse(t, fmt.Sprintf(`
schedule: {timezone: UTC, days: [mon], hours: "00:00-24:00", mean_time_between: 1m, min_gap: 0s, daily_cap: 3}
groups:
  workers:
    process: {match: %q}
    env: {CHAOS_MONKEY: enabled}
`, marker))
	dir := t.TempDir()
	j, err := journal.Create(filepath.Join(dir, "monkey.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	start := monday(t).UTC().Add(time.Hour)
	var out bytes.Buffer
	ds, err := monkey.Run(context.Background(), m, monkey.Options{Clock: &closingClock{fakeClock{now: start}, j}, Seed: 1, Journal: j, Out: &out, Until: start.Add(3 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, d := range ds {
		switch {
		case d.Action == "skipped" && strings.Contains(d.Reason, "intent could not be journaled"):
			skipped++
		case d.Action != "skipped":
			t.Errorf("decision %+v: want none made without its journal", d)
		}
	}
	if skipped == 0 {
		t.Errorf("no termination was skipped for its journal: %+v\n%s", ds, out.String())
	}
	for _, cmd := range cmds {
		if !alive(cmd) {
			t.Errorf("pid %d terminated with no journal line for it", cmd.Process.Pid)
		}
	}
	if !strings.Contains(out.String(), "its end not journaled") {
		t.Errorf("the monkey's output does not say its end was not journaled:\n%s", out.String())
	}

	closed, err := journal.Create(filepath.Join(dir, "closed.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	_ = closed.Close()
	if _, err := monkey.Run(context.Background(), m, monkey.Options{Clock: &fakeClock{now: start}, Seed: 1, Journal: closed, Until: start.Add(3 * time.Hour)}); err == nil || !strings.Contains(err.Error(), "journal") {
		t.Errorf("a monkey whose journal cannot take its start ran: %v", err)
	}
	for _, cmd := range cmds {
		if !alive(cmd) {
			t.Errorf("pid %d terminated by a monkey with no journal", cmd.Process.Pid)
		}
	}
}

// slowVictim starts a shell named by marker that runs onTerm (with arg as
// $1) when it gets SIGTERM, and waits until the monkey can find it; the
// channel is closed once it has exited.
func slowVictim(t *testing.T, marker, onTerm, arg string) <-chan struct{} {
	t.Helper()
	victim := exec.Command("sh", "-c", `trap "`+onTerm+`" TERM; while :; do sleep 0.05; done`, marker, arg)
	victim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = victim.Wait(); close(exited) }()
	t.Cleanup(func() { _ = syscall.Kill(-victim.Process.Pid, syscall.SIGKILL); <-exited })
	re := regexp.MustCompile(regexp.QuoteMeta(marker))
	processtest.WaitFor(t, "the victim's shell", func() bool { pids, _ := process.Match(re); return len(pids) == 1 })
	return exited
}

// The restart command runs once the victim has exited, not while it is
// still shutting down (its port or pid file still taken).
func TestRestartWaitsForTheVictim(t *testing.T) {
	marker := fmt.Sprintf("monkey-slow-exit-%d-%d", os.Getpid(), time.Now().UnixNano())
	exiting := filepath.Join(t.TempDir(), "exiting") // written as the victim's last act
	exited := slowVictim(t, marker, `sleep 0.5; touch $1; exit 0`, exiting)
	seen := filepath.Join(t.TempDir(), "seen")
	m := parse(t, fmt.Sprintf(`
schedule: {timezone: UTC, days: [mon], hours: "00:00-24:00", mean_time_between: 1m, min_gap: 0s, daily_cap: 1}
groups:
  slow:
    process: {match: %q, restart: [sh, -c, 'if [ -e %s ]; then echo gone; else echo running; fi > %s']}
    signal: TERM
`, marker, exiting, seen))
	start := monday(t).UTC().Add(time.Hour)
	ds, err := monkey.Run(context.Background(), m, monkey.Options{Clock: &fakeClock{now: start}, Seed: 1, Until: start.Add(3 * time.Hour)})
	if err != nil || len(ds) != 1 || ds[0].Action != "terminated" {
		t.Fatalf("decisions %+v, %v", ds, err)
	}
	<-exited
	if b, _ := os.ReadFile(seen); strings.TrimSpace(string(b)) != "gone" {
		t.Errorf("the restart saw the victim %q, want gone", b)
	}
}

// A monkey told to stop while its victim shuts down still restarts it;
// before, the restart failed on the cancelled context and nothing would
// ever run it.
func TestRestartAfterTheMonkeyIsStopped(t *testing.T) {
	marker := fmt.Sprintf("monkey-stop-mid-%d-%d", os.Getpid(), time.Now().UnixNano())
	dir := t.TempDir()
	termed, restarted := filepath.Join(dir, "termed"), filepath.Join(dir, "restarted")
	slowVictim(t, marker, `touch $1; sleep 0.5; exit 0`, termed)
	m := parse(t, fmt.Sprintf(`
schedule: {timezone: UTC, days: [mon], hours: "00:00-24:00", mean_time_between: 1m, min_gap: 0s, daily_cap: 1}
groups:
  slow:
    process: {match: %q, restart: [touch, %s]}
    signal: TERM
`, marker, restarted))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		processtest.WaitFor(t, "the victim to get SIGTERM", func() bool { _, err := os.Stat(termed); return err == nil })
		cancel() // Ctrl-C while the victim shuts down
	}()
	start := monday(t).UTC().Add(time.Hour)
	dj := filepath.Join(dir, "monkey.jsonl")
	j, err := journal.Create(dj)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = monkey.Run(ctx, m, monkey.Options{Clock: &fakeClock{now: start}, Seed: 1, Journal: j, Until: start.Add(3 * time.Hour)})
	j.Close()
	if _, err := os.Stat(restarted); err != nil {
		t.Errorf("the restart did not run after the monkey was stopped: %v", err)
	}
	events, _ := journal.ReadFile(dj)
	if p := journal.Pending(events); len(p) != 0 {
		t.Errorf("restarted, yet pending for recover: %+v", p)
	}
}

func TestOutageCheckSkips(t *testing.T) {
	marker, cmds := group(t, 2, 2)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	m := parse(t, fmt.Sprintf(`
schedule: {timezone: UTC, days: [mon], hours: "00:00-24:00", mean_time_between: 1m, min_gap: 0s, daily_cap: 5}
groups:
  workers:
    process: {match: %q}
    outage_check:
      - probe: tcp %s
`, marker, closed))
	start := monday(t).UTC().Add(time.Hour) // Monday, 00:00 UTC
	ds, _ := monkey.Run(context.Background(), m, monkey.Options{Clock: &fakeClock{now: start}, Seed: 3, Until: start.Add(30 * time.Minute)})
	if len(ds) == 0 {
		t.Fatal("no decision: the test proves nothing")
	}
	for _, d := range ds {
		if d.Action != "skipped" || !strings.Contains(d.Reason, "steady state already broken") {
			t.Errorf("decision %+v, want skipped", d)
		}
	}
	for _, cmd := range cmds {
		if !alive(cmd) {
			t.Error("a process was killed despite the outage check")
		}
	}
}

func TestParseMonkeyErrors(t *testing.T) {
	_, err := monkey.Parse("m.yaml", []byte(`
schedule: {timezone: Mars/Olympus, days: [mon, funday], hours: "17:00-09:00", daily_cap: 0}
groups:
  web: {process: {command: [sleep, "1"]}, signal: SIGFOO}
  api: {process: {match: "("}}
`))
	for _, want := range []string{
		`m.yaml:2:22: schedule.timezone: unknown time zone "Mars/Olympus"`,
		`schedule.days[1]: unknown day "funday"`,
		`schedule.hours: want HH:MM-HH:MM`,
		`schedule.daily_cap: must be at least 1`,
		`groups.web.process: the monkey acts on processes already running`,
		`groups.web.signal: unknown signal "SIGFOO"`,
		`groups.api.process.match: not a valid regexp`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// A monkey's ready_pods outage check watches its own group's namespace
// and cluster, as a steady-state one watches the first pods target's.
func TestMonkeyReadyPodsDefaults(t *testing.T) {
	m, err := monkey.Parse("monkey.yaml", []byte(`
schedule: {timezone: UTC, days: [mon], hours: "09:00-17:00", mean_time_between: 1h}
groups:
  checkout:
    pods: {namespace: shop, selector: app=checkout, kubeconfig: /etc/k}
    outage_check: ["ready_pods(app=checkout) >= 80%"]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := m.Groups[0].Check[0]
	if p.Namespace != "shop" || p.Kubeconfig != "/etc/k" {
		t.Errorf("outage check on namespace %q, kubeconfig %q; want the group's shop, /etc/k", p.Namespace, p.Kubeconfig)
	}
}
