package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/runner"
)

// prometheusServer starts Debian's prometheus on a free loopback port,
// scraping itself every second, with the rule files given (YAML, evaluated
// every second), and waits until "up" has a value.
func prometheusServer(t *testing.T, rules ...string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed: make test installs it")
		}
		t.Skip("prometheus not installed (make test installs Debian's)")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: [%q]}]\n", addr)
	if len(rules) > 0 {
		conf += "rule_files:\n"
	}
	for i, r := range rules {
		path := filepath.Join(dir, fmt.Sprintf("rules-%d.yml", i))
		if err := os.WriteFile(path, []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
		conf += fmt.Sprintf("  - %q\n", path)
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--web.listen-address="+addr, "--storage.tsdb.path="+filepath.Join(dir, "data"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(url + `/api/v1/query?query=up`)
		if err == nil {
			var b [512]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == 200 && bytes.Contains(b[:n], []byte(`"value"`)) {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s has no value for up: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPrometheusProbe(t *testing.T) {
	prom := prometheusServer(t)
	for _, tt := range []struct {
		expect, verdict string
	}{
		{"> 0", runner.Passed},
		{"< 0", runner.Error}, // does not hold in the baseline: nothing injected
	} {
		t.Run(tt.expect, func(t *testing.T) {
			src := fmt.Sprintf(`
name: prom
targets:
  self: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}
steady_state:
  - probe: {prometheus: %q}
    query: up
    expect: %q
baseline: 1s
faults: [{name: nothing much, target: self, latency: {delay: 1ms}, duration: 500ms}]
recovery: 2s
`, prom, tt.expect)
			x, err := experiment.Parse("prom.yaml", []byte(src), experiment.Options{AllowNoStop: true})
			if err != nil {
				t.Fatal(err)
			}
			res := runFast(t, context.Background(), x)
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%v), want %s; checks %+v", res.Verdict, res.Reasons, tt.verdict, res.Checks)
			}
		})
	}
}

// A stop condition on a query that cannot be evaluated (Prometheus is
// unreachable behind a proxy taken down) aborts the run once it has been
// unevaluable for longer than its for, and not before; the fault is
// reverted.
func TestUnevaluableQueryAborts(t *testing.T) {
	prom := prometheusServer(t)
	src := fmt.Sprintf(`
name: blind
targets:
  prom-link: {proxy: {listen: "127.0.0.1:0", upstream: %q}}
baseline: 1s
faults: [{name: prometheus unreachable, target: prom-link, down: {}, duration: 20s}]
recovery: 2s
stop_when:
  - prometheus: "http://{prom-link.addr}"
    query: up
    when: "< 0 for 2s"
`, strings.TrimPrefix(prom, "http://"))
	x, err := experiment.Parse("blind.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := runFast(t, context.Background(), x)
	if res.Verdict != runner.Aborted || !strings.Contains(strings.Join(res.Reasons, " "), "could not be evaluated for") {
		t.Fatalf("verdict %s (%v), want ABORTED because the query could not be evaluated", res.Verdict, res.Reasons)
	}
	f := res.Faults[0]
	if f.InjectedAt == nil || f.RevertedAt == nil {
		t.Fatalf("fault %+v: want injected and reverted", f)
	}
	// The for counts from the last successful evaluation, which is at most
	// one tick (runFast's 200ms) before the fault began.
	if took := time.Time(*f.RevertedAt).Sub(time.Time(*f.InjectedAt)); took < 2*time.Second-200*time.Millisecond || took > 15*time.Second {
		t.Errorf("aborted %v after the fault began: want after the condition's for (2s, less the tick before the fault), long before the fault's 20s", took)
	}
}

// A query that returns several series: the steady state holds only while
// every series meets its expect, and a stop condition fires when any series
// crosses its line.
func TestPrometheusSeveralSeries(t *testing.T) {
	prom := prometheusServer(t)
	const two = `label_replace(vector(1), "s", "a", "", "") or label_replace(vector(7), "s", "b", "", "")`
	steady := func(expect string) string {
		return fmt.Sprintf("steady_state:\n  - probe: {prometheus: %q}\n    query: %q\n    expect: %q\n", prom, two, expect)
	}
	stop := func(when string) string {
		return fmt.Sprintf("stop_when:\n  - prometheus: %q\n    query: %q\n    when: %q\n", prom, two, when)
	}
	for _, tt := range []struct {
		name, section, verdict, detail string
	}{
		{"steady, every series in line", steady("> 0"), runner.Passed, ""},
		{"steady, one series out of line", steady("< 5"), runner.Error, `series {s="b"} of 2: value 7`},
		{"stop, one series over the line", stop("> 5"), runner.Aborted, ""},
		{"stop, no series over the line", stop("> 10"), runner.Passed, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := `
name: series
targets:
  self: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}
` + tt.section + `
baseline: 1s
faults: [{name: nothing much, target: self, latency: {delay: 1ms}, duration: 1500ms}]
recovery: 2s
`
			x, err := experiment.Parse("series.yaml", []byte(src), experiment.Options{AllowNoStop: true})
			if err != nil {
				t.Fatal(err)
			}
			res := runFast(t, context.Background(), x)
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%v), want %s; checks %+v", res.Verdict, res.Reasons, tt.verdict, res.Checks)
			}
			if tt.detail != "" && !slices.ContainsFunc(res.Checks, func(c runner.CheckRecord) bool { return strings.Contains(c.Detail, tt.detail) }) {
				t.Errorf("no check says %q: %+v", tt.detail, res.Checks)
			}
		})
	}
}

// Only alerts in state firing count: a pending alert neither breaks the
// steady state nor stops a run; a firing one does.
func TestOnlyFiringAlertsCount(t *testing.T) {
	prom := prometheusServer(t, `groups:
  - name: test
    rules:
      - {alert: AlwaysPending, expr: vector(1), for: 1h}
      - {alert: AlwaysFiring, expr: vector(1), labels: {severity: page}}
`)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for { // both alerts evaluated once
		resp, err := client.Get(prom + "/api/v1/alerts")
		var b []byte
		if err == nil {
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if bytes.Contains(b, []byte(`"AlwaysPending"`)) && bytes.Contains(b, []byte(`"firing"`)) && bytes.Contains(b, []byte(`"pending"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never evaluated the test's alerts: %v %s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tt := range []struct {
		section, verdict string
		plotted          float64 // the value samples.jsonl has for a stop condition: 1 while firing
	}{
		{fmt.Sprintf("steady_state:\n  - {alert: AlwaysPending, prometheus: %q}\n", prom), runner.Passed, -1},
		{fmt.Sprintf("steady_state:\n  - {alert: AlwaysFiring, prometheus: %q}\n", prom), runner.Error, -1},
		{fmt.Sprintf("stop_when:\n  - {alert: AlwaysPending, prometheus: %q}\n", prom), runner.Passed, 0},
		{fmt.Sprintf("stop_when:\n  - {alert: AlwaysFiring, prometheus: %q}\n", prom), runner.Aborted, 1},
	} {
		t.Run(tt.section, func(t *testing.T) {
			src := `
name: alerts
targets:
  self: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}
` + tt.section + `
baseline: 1s
faults: [{name: nothing much, target: self, latency: {delay: 1ms}, duration: 1500ms}]
recovery: 2s
`
			x, err := experiment.Parse("alerts.yaml", []byte(src), experiment.Options{AllowNoStop: true})
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "run")
			res, err := runner.Run(context.Background(), build(t, x, 7), runner.Options{OutDir: dir, Tick: 200 * time.Millisecond, RecoveryWindow: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%v), want %s; checks %+v", res.Verdict, res.Reasons, tt.verdict, res.Checks)
			}
			if tt.plotted < 0 {
				return
			}
			samples, err := os.ReadFile(filepath.Join(dir, "samples.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(`"value":%g`, tt.plotted); !strings.Contains(string(samples), want) || strings.Contains(string(samples), fmt.Sprintf(`"value":%g`, 1-tt.plotted)) {
				t.Errorf("samples.jsonl: want the alert plotted as %s throughout:\n%.600s", want, samples)
			}
		})
	}
}

// A Prometheus behind a gate that wants a bearer token (as an
// authenticating proxy in front of one does): the token given, with
// ${VAR}, reaches it, and a probe without it fails.
func TestPrometheusBearerToken(t *testing.T) {
	prom := prometheusServer(t)
	upstream, err := url.Parse(prom)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer gate.Close()
	for _, tt := range []struct {
		token, verdict string
	}{
		{"${PROM_TOKEN}", runner.Passed},
		{"wrong", runner.Error}, // the steady state cannot hold in the baseline: nothing injected
	} {
		t.Run(tt.token, func(t *testing.T) {
			src := fmt.Sprintf(`
name: token
targets:
  self: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}
steady_state:
  - probe: {prometheus: %q}
    token: %q
    query: up
    expect: "> 0"
baseline: 1s
faults: [{name: nothing much, target: self, latency: {delay: 1ms}, duration: 500ms}]
recovery: 2s
`, gate.URL, tt.token)
			x, err := experiment.Parse("token.yaml", []byte(src), experiment.Options{AllowNoStop: true, Vars: map[string]string{"PROM_TOKEN": "s3cret"}})
			if err != nil {
				t.Fatal(err)
			}
			if res := runFast(t, context.Background(), x); res.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%v), want %s; checks %+v", res.Verdict, res.Reasons, tt.verdict, res.Checks)
			}
		})
	}
}
