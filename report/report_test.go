package report_test

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"html"
	"html/template"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/record"
	"github.com/faultline/faultline/report"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func load(t *testing.T, name string) *report.Run {
	t.Helper()
	r, err := report.Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./report -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

func TestGoldenMarkdownAndJUnit(t *testing.T) {
	report.Version = "test"
	for _, name := range []string{"failed", "aborted", "incomplete"} {
		t.Run(name, func(t *testing.T) {
			r := load(t, name)
			var md, junit bytes.Buffer
			if err := r.Markdown(&md, "report.html"); err != nil {
				t.Fatal(err)
			}
			if err := r.JUnit(&junit); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".md", md.Bytes())
			golden(t, name+".xml", junit.Bytes())
		})
	}
}

// The structure JUnit consumers read: testsuites > testsuite[name, tests,
// failures, errors, time] > testcase[name, classname, time] > failure[message].
func TestJUnitStructure(t *testing.T) {
	var buf bytes.Buffer
	if err := load(t, "failed").JUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   int    `xml:"errors,attr"`
			Time     string `xml:"time,attr"`
			Cases    []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Time      string `xml:"time,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("%d suites", len(doc.Suites))
	}
	s := doc.Suites[0]
	if s.Name != "slow-payment" || s.Tests != len(s.Cases) || s.Tests != 10 || s.Failures != 3 || s.Errors != 0 || s.Time == "" {
		t.Fatalf("suite %s: tests %d (cases %d), failures %d, errors %d, time %q", s.Name, s.Tests, len(s.Cases), s.Failures, s.Errors, s.Time)
	}
	failed := map[string]string{}
	for _, c := range s.Cases {
		if c.Classname != "faultline.slow-payment" || c.Time == "" {
			t.Errorf("case %q: classname %q, time %q", c.Name, c.Classname, c.Time)
		}
		if c.Failure != nil {
			failed[c.Name] = c.Failure.Message
		}
	}
	if msg := failed["inject: latency p99 of checkout < 3.5s"]; msg != "measured 4.006s (limit 3.5s)" {
		t.Errorf("failure of the checkout latency check: %q (all: %v)", msg, failed)
	}
}

// junit.xml validates against the schema the project ships, with xmllint.
func TestJUnitSchema(t *testing.T) {
	if _, err := exec.LookPath("xmllint"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("xmllint is not installed: make test installs libxml2-utils")
		}
		t.Skip("xmllint is not installed")
	}
	for _, name := range []string{"failed", "aborted", "incomplete"} {
		path := filepath.Join(t.TempDir(), "junit.xml")
		var buf bytes.Buffer
		if err := load(t, name).JUnit(&buf); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(path, buf.Bytes(), 0o644)
		if out, err := exec.Command("xmllint", "--noout", "--schema", "junit.xsd", path).CombinedOutput(); err != nil {
			t.Errorf("%s: xmllint: %v\n%s", name, err, out)
		}
	}
	// The schema is not a rubber stamp: a testcase without its classname fails.
	bad := filepath.Join(t.TempDir(), "bad.xml")
	_ = os.WriteFile(bad, []byte(`<testsuites><testsuite name="x" tests="1" failures="0" errors="0" time="1"><testcase name="c" time="1"/></testsuite></testsuites>`), 0o644)
	if err := exec.Command("xmllint", "--noout", "--schema", "junit.xsd", bad).Run(); err == nil {
		t.Error("xmllint accepted a testcase without classname")
	}
}

func TestIncompleteRunFromJournal(t *testing.T) {
	r := load(t, "incomplete")
	if r.Complete || r.Result.Verdict != report.Incomplete || r.Result.Name != "half-instances" || len(r.Result.Phases) != 3 {
		t.Fatalf("incomplete run: complete %v, verdict %s, name %q, phases %+v", r.Complete, r.Result.Verdict, r.Result.Name, r.Result.Phases)
	}
	if len(r.Result.Faults) != 1 || r.Result.Faults[0].Name != "kill half the instances" {
		t.Fatalf("faults: %+v", r.Result.Faults)
	}
	var html bytes.Buffer
	if err := r.HTML(&html); err != nil || !strings.Contains(html.String(), "INCOMPLETE") {
		t.Fatalf("HTML of an incomplete run: %v", err)
	}
}

// A run that recover cleaned up says so, and its faults (one of several
// steps: a fill file and its stress process) show as reverted.
func TestRecoveredRunFromJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Create(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []journal.Event{
		{Type: journal.RunStart, Name: "fill"},
		{Type: journal.Intent, ID: "0", Name: "launch api[0]", Undo: &journal.Undo{Kind: "kill"}},
		{Type: journal.Undone, ID: "0", Message: "recover: stopped 1 launched process(es)"}, // before any fault
		{Type: journal.Phase, Name: "inject"},
		{Type: journal.Intent, ID: "3", Name: "slow link", Message: "add toxic x to embedded proxy link"}, // ended with the runner
		{Type: journal.Intent, ID: "1", Name: "fill", Undo: &journal.Undo{Kind: "remove_file", Path: "/x/fill"}, Message: "fill /x"},
		{Type: journal.Intent, ID: "2", Name: "fill", Undo: &journal.Undo{Kind: "kill"}, Message: "faultline stress disk"},
		{Type: journal.Undone, ID: "2", Message: "recover: stopped 1 process(es)"},
		{Type: journal.Undone, ID: "1", Message: "recover: removed /x/fill"},
		{Type: journal.RunEnd, Message: "recovered"},
	} {
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	r, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Result.Reasons) != 1 || !strings.Contains(r.Result.Reasons[0], "'faultline recover' undid what it left") {
		t.Errorf("reasons %q, want that recover undid it", r.Result.Reasons)
	}
	f := r.Result.Faults
	if len(f) != 2 || f[0].Name != "slow link" || f[1].Name != "fill" {
		t.Fatalf("faults %+v, want slow link and fill", f)
	}
	if f[0].RevertedAt == nil {
		t.Errorf("the embedded proxy's toxic, gone with the runner, shows as not reverted: %+v", f[0])
	}
	if f[1].RevertedAt == nil || len(f[1].Hit) != 2 || len(f[1].Evidence) != 2 {
		t.Errorf("fill %+v, want reverted, with both steps and what recover did", f[1])
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := report.Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a run directory") {
		t.Errorf("empty directory: %v", err)
	}
	dir := t.TempDir()
	for _, f := range []string{"journal.jsonl", "result.json"} {
		b, _ := os.ReadFile(filepath.Join("testdata", "failed", f))
		_ = os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	_ = os.WriteFile(filepath.Join(dir, "samples.jsonl"), []byte("{\"phase\":\"baseline\"}\n{not json\n"), 0o644)
	if _, err := report.Load(dir); err == nil || !strings.Contains(err.Error(), "samples.jsonl:2") {
		t.Errorf("bad samples line: %v", err)
	}
}

// written copies a test run to a temporary directory and writes its
// reports there.
func written(t *testing.T, name string) (string, *report.Run) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"journal.jsonl", "result.json", "samples.jsonl"} {
		b, _ := os.ReadFile(filepath.Join("testdata", name, f))
		_ = os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	r, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteAll(); err != nil {
		t.Fatal(err)
	}
	return dir, r
}

func TestWriteAll(t *testing.T) {
	dir, _ := written(t, "aborted")
	for _, f := range []string{"report.html", "junit.xml", "summary.md"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() == 0 || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{`id="verdict">ABORTED<`, `data-marker="stop: error_rate &gt; 90% for 2s"`, `data-band="fault" data-label="zone a outage"`} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	if strings.Contains(string(html), "http://") && strings.Contains(string(html), "<script src") {
		t.Error("report.html loads a script")
	}
}

// FuzzLoad feeds a run directory's three files, each seeded with a few
// lines of a real run, to Load and every renderer: an error is fine, a
// panic or a hang is not.
func FuzzLoad(f *testing.F) {
	head := func(name, file string, n int) []byte {
		b, _ := os.ReadFile(filepath.Join("testdata", name, file))
		lines := bytes.SplitAfter(b, []byte("\n"))
		return bytes.Join(lines[:min(n, len(lines))], nil)
	}
	r, _ := os.ReadFile(filepath.Join("testdata", "aborted", "result.json"))
	f.Add(r, head("aborted", "samples.jsonl", 3), head("aborted", "journal.jsonl", 4))
	f.Add([]byte(`{"phases":[{"name":"inject","start":"x"}]}`), []byte(`{"time":"2026-01-01T00:00:00Z","p99":-1}`), []byte(`{"type":"run_start"}`))
	f.Add([]byte{}, []byte(`{"time":"2026-01-01T00:00:00Z","p99":1e300}`), []byte(`{"type":"phase","name":"inject","time":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, result, samples, journal []byte) {
		dir := t.TempDir()
		_ = os.WriteFile(filepath.Join(dir, "samples.jsonl"), samples, 0o644)
		_ = os.WriteFile(filepath.Join(dir, "journal.jsonl"), journal, 0o644)
		if len(result) > 0 {
			_ = os.WriteFile(filepath.Join(dir, "result.json"), result, 0o644)
		}
		r, err := report.Load(dir)
		if err != nil {
			return // a clear error is the right answer to bad input
		}
		var b bytes.Buffer
		if err := r.HTML(&b); err != nil {
			t.Fatal(err)
		}
		if err := r.JUnit(&b); err != nil {
			t.Fatal(err)
		}
		if err := r.Markdown(&b, ""); err != nil {
			t.Fatal(err)
		}
		if err := report.Compare(&b, r, r, dir); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCompareShowsBothSidesFaultsAndHypotheses: a comparison shows each
// run's faults and hypothesis, and says plainly when they differ.
func TestCompareShowsBothSidesFaultsAndHypotheses(t *testing.T) {
	a, b := load(t, "failed"), load(t, "failed")
	if w := report.CompareWarnings(a, b); len(w) != 0 {
		t.Fatalf("warnings for a run compared with itself: %v", w)
	}
	b.Result.Hypothesis = "Checkout survives anything."
	b.Result.Faults[0].Settings = "latency (delay 2s) on payments-link, downstream, from 2s for 10s"
	warnings := report.CompareWarnings(a, b)
	if len(warnings) != 2 || !strings.Contains(warnings[0], "different hypotheses") || !strings.Contains(warnings[1], `fault "slow card processor" differs`) {
		t.Fatalf("warnings = %q, want the hypothesis and the fault", warnings)
	}
	var out bytes.Buffer
	if err := report.Compare(&out, a, b, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	html := out.String()
	for _, want := range []string{"Not like for like", "Checkout survives anything.", a.Result.Hypothesis,
		"latency on payments-link", "latency (delay 2s) on payments-link, downstream, from 2s for 10s", `<tr class="differ">`} {
		if want == `<tr class="differ">` {
			if !strings.Contains(html, want) {
				t.Errorf("compare.html does not mark the fault that differs")
			}
			continue
		}
		if !strings.Contains(html, template.HTMLEscapeString(want)) {
			t.Errorf("compare.html lacks %q", want)
		}
	}
}

// TestRecordedRunsRenderAsBefore: run directories recorded by an earlier
// faultline (a finished run, and one whose runner was killed) render to
// the same report.html, summary.md and junit.xml as they did then
// (-update rewrites the goldens).
func TestRecordedRunsRenderAsBefore(t *testing.T) {
	version := report.Version
	report.Version = "test"
	defer func() { report.Version = version }()
	for _, name := range []string{"recorded", "incomplete"} {
		t.Run(name, func(t *testing.T) {
			r := load(t, name)
			var html, md, junit bytes.Buffer
			if err := r.HTML(&html); err != nil {
				t.Fatal(err)
			}
			if err := r.Markdown(&md, ""); err != nil {
				t.Fatal(err)
			}
			if err := r.JUnit(&junit); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".html", html.Bytes())
			golden(t, name+"-as-before.md", md.Bytes())
			golden(t, name+"-as-before.xml", junit.Bytes())
		})
	}
}

// TestIncompleteRunReadsTheTypedFields: a journal that says its file and
// seed in run_start's own fields (not the message) is read from them.
func TestIncompleteRunReadsTheTypedFields(t *testing.T) {
	dir := t.TempDir()
	j := `{"time":"2026-12-01T10:00:00Z","type":"run_start","name":"typed","file":"exp.yaml","seed":99,"run":"abc"}
{"time":"2026-12-01T10:00:01Z","type":"intent","id":"1","name":"launch svc[0]","launch":{"target":"svc","instance":0},"undo":{"kind":"kill","procs":[{"pid":1,"start":1}]}}
{"time":"2026-12-01T10:00:02Z","type":"intent","id":"2","name":"slow","message":"add toxic"}
`
	if err := os.WriteFile(filepath.Join(dir, "journal.jsonl"), []byte(j), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Result.File != "exp.yaml" || r.Result.Seed != 99 || len(r.Result.Faults) != 1 || r.Result.Faults[0].Name != "slow" {
		t.Fatalf("rebuilt result: file %q seed %d faults %+v; want exp.yaml, 99 and the one fault (not the launch)", r.Result.File, r.Result.Seed, r.Result.Faults)
	}
}

// A run with a story tells it in report.html and summary.md: the weakness
// and the fix, each with the places in the code; a run without one has no
// such section.
func TestStoryIsTold(t *testing.T) {
	r := load(t, "failed")
	var html, md bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.Markdown(&md, ""); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html.String(), "What it teaches") || strings.Contains(md.String(), "The weakness") {
		t.Fatal("a run without a story tells one")
	}
	r.Result.Story = &record.Story{Weakness: "No timeout <anywhere>.", WeaknessAt: []string{"shop/a.go:1", "shop/a.go:9"},
		Fix: "A 1 s timeout.", FixAt: []string{"shop/b.go:2"}}
	html.Reset()
	md.Reset()
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.Markdown(&md, ""); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"What it teaches", "No timeout &lt;anywhere&gt;.", "<code>shop/a.go:1</code>, <code>shop/a.go:9</code>", "A 1 s timeout.", "<code>shop/b.go:2</code>"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, want := range []string{"**The weakness:** No timeout <anywhere>. (`shop/a.go:1`, `shop/a.go:9`)", "**The fix:** A 1 s timeout. (`shop/b.go:2`)"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md.String())
		}
	}
}

// A run without traffic draws its probes and its stop queries instead of
// three empty charts; a run with traffic draws the oldest request in flight
// and the client timeout on its latency chart; compare draws each probe for
// both runs.
func TestProbesQueriesAndHangsArePlotted(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(s int) record.Stamp { return record.Stamp(t0.Add(time.Duration(s) * time.Second)) }
	v := 3.0
	run := func(traffic bool) *report.Run {
		r := &report.Run{Dir: t.TempDir(), Complete: true, Result: record.Result{Name: "x", Verdict: "FAILED", Started: at(0), Ended: at(4),
			Phases: []record.PhaseRecord{{Name: "baseline", Start: at(0), End: at(2)}, {Name: "inject", Start: at(2), End: at(4)}}}}
		for i := range 4 {
			s := record.Sample{Time: at(i + 1), Phase: "baseline",
				Probes: []record.ProbeSample{{Probe: "health", Passed: i < 2, Latency: 0.01 * float64(i+1)}},
				Stops:  []record.StopSample{{Condition: "rate(errors[5s]) > 5", Holds: false, Value: &v}}}
			if traffic {
				s.Requests, s.P99, s.InFlight, s.Oldest = 10, 0.2, 3, float64(i)
			}
			r.Samples = append(r.Samples, s)
		}
		if traffic {
			r.Result.Timeout = 4
			r.Result.Traffic = []record.TrafficRecord{{Phase: "baseline", Requests: 40}}
		}
		return r
	}
	seriesOf := func(page string) map[string]string {
		out := map[string]string{}
		for _, m := range regexp.MustCompile(`data-series="([^"]+)" data-points="(\d+)"`).FindAllStringSubmatch(page, -1) {
			out[html.UnescapeString(m[1])] = m[2]
		}
		return out
	}
	var b strings.Builder
	if err := run(false).HTML(&b); err != nil {
		t.Fatal(err)
	}
	got := seriesOf(b.String())
	if got["health"] != "4" || got["rate(errors[5s]) > 5"] != "4" || got["p99"] != "" {
		t.Errorf("no traffic: series %v, want the probe and the query drawn, and no traffic charts", got)
	}
	b.Reset()
	if err := run(true).HTML(&b); err != nil {
		t.Fatal(err)
	}
	got = seriesOf(b.String())
	if got["p99"] != "4" || got["oldest in flight"] != "4" || !strings.Contains(b.String(), "client timeout 4 s") {
		t.Errorf("traffic: series %v, want p99, the oldest in flight and the client timeout", got)
	}
	b.Reset()
	a, c := run(false), run(true)
	if err := report.Compare(&b, a, c, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Probe health: share passed", "Probe health: time to answer", "Stop condition rate(errors[5s]) &gt; 5: the value read", "Latency p99"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("compare with traffic on one side does not draw %q", want)
		}
	}
	b.Reset()
	if err := report.Compare(&b, run(false), run(false), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if page := b.String(); strings.Contains(page, "Latency p99") || strings.Contains(page, "Requests per second") ||
		!strings.Contains(page, "Probe health: time to answer") || !strings.Contains(page, "the value read each tick") {
		t.Errorf("compare of two runs without traffic: want no traffic chart, the probe's and the query's")
	}
}

// A stop condition on Prometheus that could not be evaluated in some ticks
// is said in the report and its Markdown, with how often and the last
// error: the run's safety net was blind for that long.
func TestBlindStopConditionsAreSaid(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(s int) record.Stamp { return record.Stamp(t0.Add(time.Duration(s) * time.Second)) }
	r := &report.Run{Dir: t.TempDir(), Complete: true, Result: record.Result{Name: "x", Verdict: "PASSED", Started: at(0), Ended: at(5),
		Phases: []record.PhaseRecord{{Name: "baseline", Start: at(0), End: at(1)}, {Name: "inject", Start: at(1), End: at(5)}}}}
	v := 1.0
	for i := range 4 {
		st := record.StopSample{Condition: "errors > 5", Value: &v}
		if i%2 == 1 {
			st = record.StopSample{Condition: "errors > 5", Error: fmt.Sprintf("connection refused %d", i)}
		}
		r.Samples = append(r.Samples, record.Sample{Time: at(i + 1), Phase: "inject", Stops: []record.StopSample{st}})
	}
	want := "errors > 5 could not be evaluated in 2 of 4 ticks (last: connection refused 3)"
	var page, md strings.Builder
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	if err := r.Markdown(&md, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.UnescapeString(page.String()), want) {
		t.Errorf("report does not say %q", want)
	}
	if !strings.Contains(md.String(), want) {
		t.Errorf("markdown does not say %q:\n%s", want, md.String())
	}
}
