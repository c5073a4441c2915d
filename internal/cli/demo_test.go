package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/faultline/faultline/examples/experiments"
	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/internal/freeport"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/record"
	"github.com/faultline/faultline/state"
)

// needRealServers skips without PostgreSQL and redis-server, except under
// CI=true, where make test installs them.
func needRealServers(t *testing.T) {
	t.Helper()
	_, pgErr := shop.FindPostgres()
	if pgErr == nil && shop.RedisServer() != "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL or redis-server missing: make test installs them (%v)", pgErr)
	}
	t.Skip("PostgreSQL or redis-server is not installed")
}

type demoSummary struct {
	Database   string `json:"database"`
	AsExpected bool   `json:"as_expected"`
	Runs       []struct {
		Experiment string   `json:"experiment"`
		Build      string   `json:"build"`
		Verdict    string   `json:"verdict"`
		Expected   bool     `json:"expected"`
		Broken     []string `json:"broken"`
		Dir        string   `json:"dir"`
	} `json:"runs"`
}

// The demo's promise, against real PostgreSQL and Redis: each experiment
// finds its weakness in the fragile build, for the documented reason, and
// the resilient build passes it.
func TestDemoFragileFailsResilientPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every experiment against both builds: 36 runs, about 15 minutes")
	}
	needRealServers(t)
	bin := binary(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "demo", "--checklist", "--real", "--quiet", "--out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("demo: %v\n%s\n%s", err, stdout.String(), tail(stderr.Bytes(), 8192))
	}
	var sum demoSummary
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sum.Runs {
		if !r.Expected { // what CI needs to see why
			res, _ := os.ReadFile(filepath.Join(r.Dir, "result.json"))
			logs, _ := os.ReadFile(filepath.Join(r.Dir, "processes.log"))
			t.Logf("%s %s ended %s:\n%s\nprocesses.log (last 4 KB):\n%s", r.Experiment, r.Build, r.Verdict, res, tail(logs, 4096))
		}
	}
	if !strings.HasPrefix(sum.Database, "PostgreSQL") || !sum.AsExpected || len(sum.Runs) != 36 {
		t.Fatalf("summary: database %q, as expected %v, %d runs\n%s", sum.Database, sum.AsExpected, len(sum.Runs), stdout.String())
	}
	// The check each fragile run must break: the weakness it documents.
	reason := map[string]string{
		"cache-dies":      "inject: error_rate < 1%",
		"db-primary-down": "inject: latency p99 < 1s",
		"slow-payment":    "inject: latency p99 of checkout < 3.5s",
		"half-instances":  "inject: error_rate < 1%",
		"zone-outage":     "inject: error_rate < 1%",
		"payment-errors":  "inject: error_rate < 1%",
		// Hangs on a processor that no packet reaches.
		"service-unreachable": "inject: error_rate < 1%",
		// Marked paid without the processor's word.
		"payment-malformed": `inject: probe GET http://{front.addr}/stats expects 200 and body ~ "unverified":0`,
		"dns-fails":         "inject: error_rate < 1%",
		"db-pool-exhausted": "inject: latency p99 < 1s", // waits for a free connection
		"disk-fills":        "inject: error_rate < 1%",
		"queue-down":        "inject: error_rate < 1%", // no broker, no order
		"memory-pressure":   "inject: error_rate < 1%",
		"cpu-spike":         "inject: latency p99 of checkout < 3.5s", // waits for a starved processor
		"db-nulls":          "inject: error_rate < 1%",
		"schema-mismatch":   "inject: error_rate < 1%",
		// Connects per query: lost SYNs cost seconds.
		"db-packet-loss": "inject: latency p99 of checkout < 3.5s",
		// The shop's own alert: the run stops on it.
		"error-alert": "inject: alert ErrorRateTooHigh firing",
	}
	network := os.Geteuid() == 0 && len(netfault.Lacks(context.Background())) == 0
	for _, r := range sum.Runs {
		switch r.Build {
		case "fragile":
			if r.Verdict != "FAILED" && r.Verdict != "ABORTED" || !contains(r.Broken, reason[r.Experiment]) {
				t.Errorf("%s fragile: %s, broken %q; want FAILED or ABORTED with %q broken", r.Experiment, r.Verdict, r.Broken, reason[r.Experiment])
			}
			if r.Experiment == "error-alert" {
				assertStoppedOnAlert(t, r.Dir)
			}
		case "resilient":
			if r.Verdict != "PASSED" || len(r.Broken) > 0 {
				t.Errorf("%s resilient: %s, broken %q; want PASSED", r.Experiment, r.Verdict, r.Broken)
			}
		}
		for _, f := range []string{"result.json", "report.html", "junit.xml", "summary.md"} {
			if _, err := os.Stat(filepath.Join(r.Dir, f)); err != nil {
				t.Errorf("%s %s: %v", r.Experiment, r.Build, err)
			}
		}
		// Where the machine makes network faults, these two reach traffic
		// that nobody rewired: a real partition, lookups intercepted.
		if (r.Experiment == "zone-outage" || r.Experiment == "dns-fails") && network {
			var res record.Result
			b, err := os.ReadFile(filepath.Join(r.Dir, "result.json"))
			if err == nil {
				err = json.Unmarshal(b, &res)
			}
			if err != nil || !strings.HasSuffix(res.File, r.Experiment+"-net.yaml") {
				t.Errorf("%s %s ran from %q (%v), want its network form, %s-net.yaml", r.Experiment, r.Build, res.File, err, r.Experiment)
			}
		}
		if _, err := os.Stat(filepath.Join(out, r.Experiment, "compare.html")); err != nil {
			t.Errorf("%s: %v", r.Experiment, err)
		}
	}
	for _, name := range experiments.All() {
		if !regexp.MustCompile(`(?m)^`+name+`\s+fragile\s+(FAILED|ABORTED)\s`).MatchString(stdout.String()) ||
			!regexp.MustCompile(`(?m)^`+name+`\s+resilient\s+PASSED\s`).MatchString(stdout.String()) {
			t.Errorf("table lacks %s's rows:\n%s", name, stdout.String())
		}
	}
	assertStoriesTold(t, out, stdout.String())
	assertChecklist(t, out, stdout.String())
	assertNothingLeft(t, bin, out, stderr.String())
}

// assertStoriesTold checks that the demo's table, its summary.md and each
// run's report and summary.md tell every experiment's weakness and fix.
func assertStoriesTold(t *testing.T, out, stdout string) {
	t.Helper()
	md, err := os.ReadFile(filepath.Join(out, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range experiments.All() {
		st := experiments.Stories[name]
		for _, text := range []string{st.Weakness, st.Fix, st.WeaknessAt[0], st.FixAt[0]} {
			if !strings.Contains(stdout, text) {
				t.Errorf("the demo's output does not tell %s's story: lacks %q", name, text)
			}
			if !strings.Contains(string(md), text) {
				t.Errorf("summary.md does not tell %s's story: lacks %q", name, text)
			}
		}
		for _, build := range []string{"fragile", "resilient"} {
			dir := filepath.Join(out, name, build)
			var res struct {
				Story *experiments.Story `json:"story"`
			}
			b, err := os.ReadFile(filepath.Join(dir, "result.json"))
			if err == nil {
				err = json.Unmarshal(b, &res)
			}
			if err != nil || res.Story == nil || res.Story.Weakness != st.Weakness || res.Story.Fix != st.Fix {
				t.Errorf("%s %s: result.json's story %+v (%v), want %s's", name, build, res.Story, err, name)
			}
			html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
			runMD, _ := os.ReadFile(filepath.Join(dir, "summary.md"))
			if !strings.Contains(string(html), "The weakness.") || !strings.Contains(string(html), st.FixAt[0]) ||
				!strings.Contains(string(runMD), st.WeaknessAt[0]) {
				t.Errorf("%s %s: report.html or summary.md does not tell the story", name, build)
			}
		}
	}
}

// assertStoppedOnAlert checks that a run was stopped by ErrorRateTooHigh
// within the rule's for (2 s) plus two scrape and evaluation intervals (1 s
// each) and one tick of the runner, from the fault's injection, and that the
// fault was reverted.
func assertStoppedOnAlert(t *testing.T, dir string) {
	t.Helper()
	var res record.Result
	data, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil || json.Unmarshal(data, &res) != nil || len(res.Faults) != 1 || res.Faults[0].InjectedAt == nil || res.Faults[0].RevertedAt == nil {
		t.Fatalf("error-alert fragile: result.json %v: want its fault injected and reverted", err)
	}
	fired, detail := false, ""
	for _, c := range res.Checks {
		if c.Fired && strings.Contains(c.Condition, "ErrorRateTooHigh") {
			fired, detail = true, c.Detail
		}
	}
	// Stopped by the alert, not by the schedule: long before the fault's
	// own 15 s. From injection, how soon depends on how fast errors show
	// in the rule's 5 s rate (a figure: about 7 s, 8 s seen on a loaded
	// machine). From the moment Prometheus saw its condition hold, the
	// stop comes within the rule's for (2 s) plus two scrape and
	// evaluation intervals (2 × (1 s + 1 s)): a bound.
	reverted := time.Time(*res.Faults[0].RevertedAt)
	took := reverted.Sub(time.Time(*res.Faults[0].InjectedAt))
	t.Logf("error-alert fragile: stopped on the alert %v after the fault began (%s)", took, detail)
	if !fired || took >= 14*time.Second {
		t.Errorf("error-alert fragile: stopped on the alert %v, %v after the fault began; want it by the alert, before the fault's own 15 s", fired, took)
	}
	m := regexp.MustCompile(`held since (\S+),`).FindStringSubmatch(detail)
	var since time.Time
	if m != nil {
		since, err = time.Parse(time.RFC3339Nano, m[1])
	}
	if m == nil || err != nil {
		t.Fatalf("error-alert fragile: the stop does not say since when the alert's condition held: %q (%v)", detail, err)
	}
	if after := reverted.Sub(since); after > 2*time.Second+2*(time.Second+time.Second) {
		t.Errorf("error-alert fragile: stopped %v after Prometheus saw the alert's condition hold; want within its for (2 s) plus two scrape and evaluation intervals (4 s)", after)
	}
}

// assertChecklist checks the quarterly checklist at the end of the demo's
// output and in its summary.md: every item covered by an experiment has
// fragile FAILED or ABORTED and resilient PASSED, and the totals say so.
func assertChecklist(t *testing.T, out, stdout string) {
	t.Helper()
	md, _ := os.ReadFile(filepath.Join(out, "summary.md"))
	covered := 0
	for _, it := range experiments.Quarterly {
		if it.Planned != "" {
			continue
		}
		covered++
		line := regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(it.Failure) + `\s+` + it.Experiment + `\s+(FAILED|ABORTED)\s+PASSED$`)
		if !line.MatchString(stdout) {
			t.Errorf("the checklist lacks %q covered by %s, fragile FAILED or ABORTED, resilient PASSED", it.Failure, it.Experiment)
		}
		row := regexp.MustCompile(`(?m)^\| ` + it.Group + ` \| ` + regexp.QuoteMeta(it.Failure) + ` \| ` + it.Experiment + ` \| (FAILED|ABORTED) \| PASSED \|$`)
		if !row.MatchString(string(md)) {
			t.Errorf("summary.md's checklist lacks %q", it.Failure)
		}
	}
	total := fmt.Sprintf("%d of %d failures covered on this machine, %d with both verdicts as expected", covered, len(experiments.Quarterly), covered)
	if !strings.Contains(stdout, total) || !strings.Contains(string(md), total) {
		t.Errorf("the checklist's totals are not %q:\n%s", total, stdout)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// assertNothingLeft checks that the demo left nothing behind: no process
// of the shop (launched from bin), not its PostgreSQL, no run in out that
// faultline recover would have to undo, and none of what its faults make on
// the machine: the runs' network namespaces, interfaces and nftables tables,
// cpu-spike's cgroups, disk-fills' log volumes, a run still registered.
func assertNothingLeft(t *testing.T, bin, out, stderr string) {
	t.Helper()
	left, err := process.Match(regexp.MustCompile(regexp.QuoteMeta(bin) + " shop "))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("shop processes left running: %v", left)
	}
	if m := regexp.MustCompile(`PostgreSQL on \S+ \(pid (\d+)\)`).FindStringSubmatch(stderr); m != nil {
		pid, _ := strconv.Atoi(m[1])
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("PostgreSQL (pid %d) left running", pid)
		}
	} else {
		t.Errorf("demo did not say which PostgreSQL it started:\n%s", stderr)
	}
	journals, _ := filepath.Glob(filepath.Join(out, "*", "*", "journal.jsonl"))
	if len(journals) == 0 {
		t.Errorf("no run directory in %s", out)
	}
	for _, j := range journals {
		dir := filepath.Dir(j)
		b, err := exec.Command(bin, "recover", dir).CombinedOutput()
		if err != nil || !bytes.Contains(b, []byte("ended cleanly, nothing to do")) {
			t.Errorf("faultline recover %s: %v: %s", dir, err, b)
		}
		if os.Geteuid() == 0 {
			gone, err := netfault.Leftovers(runID(t, dir))
			if err != nil {
				t.Errorf("%s: %v", dir, err)
			}
			for _, l := range gone {
				t.Errorf("%s left %s", dir, l)
			}
		}
	}
	for _, pattern := range []string{"/sys/fs/cgroup/cpu/faultline-cpu-*", "/sys/fs/cgroup/faultline-cpu-*"} {
		cgroups, _ := filepath.Glob(pattern)
		for _, cg := range cgroups {
			t.Errorf("cpu-spike's cgroup left: %s", cg)
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(mounts, []byte("faultline-logvol-")) {
		t.Errorf("disk-fills' log volume left mounted:\n%s", mounts)
	}
	runs, err := state.Runs(os.Getenv("FAULTLINE_STATE_DIR"))
	if err != nil {
		t.Error(err)
	}
	for _, r := range runs {
		if r.Alive() {
			t.Errorf("run still registered and alive: %+v", r)
		}
	}
}

// Ctrl-C in the middle of a fault: the demo reverts it, stops everything
// it started, and exits 3.
func TestDemoInterrupted(t *testing.T) {
	needRealServers(t)
	bin := binary(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "demo", "--only", "half-instances", "--quiet", "--out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(out, "half-instances", "fragile", "journal.jsonl")
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(journal)
		if bytes.Contains(b, []byte(`"name":"kill half the instances"`)) {
			break // the fault is being injected
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("fault never injected:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the journal
	}
	_ = cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("demo after Ctrl-C: %v, want exit 3\n%s\n%s", err, stdout.String(), stderr.String())
	}
	b, _ := os.ReadFile(journal)
	if !bytes.Contains(b, []byte(`"type":"run_end"`)) {
		t.Errorf("journal has no run_end after the interrupt:\n%s", b)
	}
	assertNothingLeft(t, bin, out, stderr.String())
}

// On a bare machine the demo runs on SQLite and the embedded cache, and
// says what it skips.
func TestDemoFallbacks(t *testing.T) {
	bin := binary(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "demo", "--db", "sqlite", "--cache", "embedded", "--only", "db-primary-down,half-instances", "--quiet", "--out", out, "--seed", "77")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{
		"SQLite (--db sqlite)", "embedded Redis-protocol server",
		"skipped db-primary-down: needs PostgreSQL",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	if !regexp.MustCompile(`(?m)^half-instances\s+fragile\s+FAILED`).MatchString(stdout.String()) ||
		!regexp.MustCompile(`(?m)^half-instances\s+resilient\s+PASSED`).MatchString(stdout.String()) {
		t.Errorf("half-instances on SQLite:\n%s\n%s", stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "half-instances", "resilient", "shop.db")); err != nil {
		t.Errorf("the resilient run's SQLite database: %v", err)
	}
	// Each run's replay command replays the demo's experiment, not the
	// run's temporary parts.
	var res struct {
		Seed   int64
		Replay string
	}
	b, _ := os.ReadFile(filepath.Join(out, "half-instances", "fragile", "result.json"))
	if err := json.Unmarshal(b, &res); err != nil || res.Seed != 77 || res.Replay != "faultline demo --only half-instances --seed 77 --db sqlite --cache embedded" {
		t.Errorf("the fragile run's seed and replay = %d %q (%v)", res.Seed, res.Replay, err)
	}
}

func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--only", "no-such"},
		{"demo", "--db", "mysql"},
		{"demo", "--cache", "memcached"},
		{"demo", "extra"},
	} {
		if code, _, errOut := run(t, args...); code != 2 || errOut == "" {
			t.Errorf("%q = %d, %q; want exit 2 with a message", args, code, errOut)
		}
	}
}

// copyRun copies a run directory of the report package's test data.
func copyRun(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"journal.jsonl", "result.json", "samples.jsonl"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "report", "testdata", name, f))
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	return dir
}

func TestReportAndCompareCommands(t *testing.T) {
	dir := copyRun(t, "failed")
	code, out, errOut := run(t, "report", dir)
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "report.html")) {
		t.Fatalf("report = %d %q %q", code, out, errOut)
	}
	for _, f := range []string{"report.html", "junit.xml", "summary.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	for format, want := range map[string]string{"md": "## ❌ FAILED: `slow-payment`", "junit": "<testsuites", "json": `"verdict": "FAILED"`, "html": `id="verdict">FAILED<`} {
		code, out, errOut := run(t, "report", dir, "--format", format)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("report --format %s = %d, %q; output lacks %q", format, code, errOut, want)
		}
	}
	for _, args := range [][]string{{"report", dir, "--format", "pdf"}, {"report", t.TempDir()}, {"report"}, {"compare", dir}} {
		if code, _, errOut := run(t, args...); code != 2 || errOut == "" {
			t.Errorf("%q = %d, want 2 with a message", args, code)
		}
	}
	other := copyRun(t, "aborted")
	html := filepath.Join(t.TempDir(), "cmp.html")
	code, out, errOut = run(t, "compare", dir, other, "-o", html)
	b, _ := os.ReadFile(html)
	if code != 0 || !strings.Contains(string(b), `id="verdict-b"`) || !strings.Contains(string(b), "ABORTED") {
		t.Fatalf("compare = %d %q %q", code, out, errOut)
	}
	// Those are runs of two experiments: compared, with a warning; two runs
	// of one experiment get none.
	if !strings.Contains(errOut, `warning: these are runs of two experiments ("slow-payment" and "zone-outage")`) {
		t.Errorf("compare of two experiments: %q, want a warning", errOut)
	}
	if code, _, errOut := run(t, "compare", dir, copyRun(t, "failed"), "-o", html); code != 0 || strings.Contains(errOut, "warning") {
		t.Errorf("compare of two runs of one experiment = %d %q, want no warning", code, errOut)
	}
}

// faultline dns answers, fails what its rules say, and stops on SIGTERM.
func TestDNSCommand(t *testing.T) {
	bin := binary(t)
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "dns", "--listen", addr, "--record", "payments.shop.test=127.0.0.1", "--rule", "*.gone.test=NXDOMAIN")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.Contains(line, "faultline dns on "+addr) {
		t.Fatalf("first line: %q (%s)", line, stderr.String())
	}
	ask := func(name string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		in, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return in
	}
	if in := ask("payments.shop.test"); len(in.Answer) != 1 || !strings.Contains(in.Answer[0].String(), "127.0.0.1") {
		t.Errorf("record: %v", in)
	}
	if in := ask("x.gone.test"); in.Rcode != dns.RcodeNameError {
		t.Errorf("NXDOMAIN rule: rcode %d", in.Rcode)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dns after SIGTERM: %v, want exit 0 (%s)", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "2 queries, 1 faulted") {
		t.Errorf("closing line: %q", stderr.String())
	}
	if code, _, errOut := run(t, "dns", "--rule", "x=EXPLODE"); code != 2 || !strings.Contains(errOut, "unknown action") {
		t.Errorf("bad rule: %d %q", code, errOut)
	}
	// The kill switch stops it too, exit 3.
	stateDir := t.TempDir()
	halted := exec.Command(bin, "dns", "--listen", "127.0.0.1:0", "--state-dir", stateDir)
	out, _ := halted.StdoutPipe()
	var haltedErr bytes.Buffer
	halted.Stderr = &haltedErr
	if err := halted.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = halted.Process.Kill() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); !strings.HasPrefix(line, "faultline dns on") {
		_ = halted.Process.Kill()
		_ = halted.Wait() // before reading its stderr
		t.Fatalf("before the halt: %q, %v; stderr %q", line, err, haltedErr.String())
	}
	if code, _, _ := run(t, "halt", "--state-dir", stateDir); code != 0 {
		t.Fatalf("halt = %d", code)
	}
	var ee *exec.ExitError
	if err := halted.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("dns after halt: %v, want exit 3; stderr %q", err, haltedErr.String())
	}
}
