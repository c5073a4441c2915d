package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/runner"
)

// prometheusServer starts Debian's prometheus on a free loopback port,
// scraping itself every second, and waits until "up" has a value.
func prometheusServer(t *testing.T) string {
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
	conf := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: [%q]}]\n", addr)
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
