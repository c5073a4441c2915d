package report_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/faultline/faultline/report"
)

// chromium returns Debian's chromium, or skips (fails under CI=true).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed: make test installs it")
	}
	t.Skip("chromium is not installed")
	return ""
}

// page is what a real browser saw of a page.
type page struct {
	requests []string // every URL the page asked for
	console  []string // console errors and uncaught exceptions
	verdict  string
	series   map[string][]string // chart id -> its series, in order
	points   int                 // data points over all series
	bands    []string
	shot     []byte
}

// open loads file in headless Chromium and reads what it shows.
func open(t *testing.T, file, verdictSel string) page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1100, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	var mu sync.Mutex
	var p page
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			p.requests = append(p.requests, e.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if e.Type == "error" || e.Type == "warning" {
				p.console = append(p.console, string(e.Type))
			}
		case *runtime.EventExceptionThrown:
			p.console = append(p.console, e.ExceptionDetails.Text)
		}
	})
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	abs, _ := filepath.Abs(file)
	fail := func(err error) {
		if err != nil {
			t.Fatalf("chromium on %s: %v", file, err)
		}
	}
	fail(chromedp.Do(ctx, chromedp.Navigate("file://"+abs), chromedp.WaitVisible(verdictSel)))
	verdict, err := chromedp.Run(ctx, chromedp.Text(verdictSel))
	fail(err)
	series, err := chromedp.Run(ctx, chromedp.Evaluate[map[string][]string](`Object.fromEntries([...document.querySelectorAll('svg.chart')].map(s => [s.id, [...s.querySelectorAll('[data-series]')].map(g => g.dataset.series)]))`))
	fail(err)
	points, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('[data-series]')].reduce((n, g) => n + Number(g.dataset.points), 0)`))
	fail(err)
	bands, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-band]')].map(b => b.dataset.band + ":" + b.dataset.label)`))
	fail(err)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	fail(err)
	mu.Lock()
	defer mu.Unlock()
	p.verdict, p.series, p.bands, p.points, p.shot = strings.TrimSpace(verdict), series, bands, points, shot
	return p
}

// artifact keeps a screenshot beside the test run: test-artifacts/ at the
// repository's root.
func artifact(t *testing.T, name string, b []byte) {
	dir := filepath.Join("..", "test-artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", filepath.Join(dir, name))
}

func assertOffline(t *testing.T, p page, file string) {
	t.Helper()
	for _, u := range p.requests {
		if !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") {
			t.Errorf("%s asked for %s: the report must be self-contained", file, u)
		}
	}
	if len(p.console) > 0 {
		t.Errorf("%s: console errors: %q", file, p.console)
	}
}

func TestHTMLReportInChromium(t *testing.T) {
	dir, r := written(t, "failed")
	file := filepath.Join(dir, "report.html")
	p := open(t, file, "#verdict")
	assertOffline(t, p, file)
	if p.verdict != "FAILED" {
		t.Errorf("verdict shown: %q", p.verdict)
	}
	want := map[string][]string{"rate": {"requests/s", "errors/s"}, "errors": {"error rate"}, "latency": {"p50", "p95", "p99"}}
	for id, names := range want {
		if strings.Join(p.series[id], ",") != strings.Join(names, ",") {
			t.Errorf("chart %s has series %q, want %q", id, p.series[id], names)
		}
	}
	if p.points != 6*len(r.Samples) {
		t.Errorf("%d points drawn, want %d (6 series × %d samples)", p.points, 6*len(r.Samples), len(r.Samples))
	}
	if !strings.Contains(strings.Join(p.bands, ","), "fault:slow card processor") || !strings.Contains(strings.Join(p.bands, ","), "baseline:baseline") {
		t.Errorf("bands: %q", p.bands)
	}
	artifact(t, "report.png", p.shot)
}

func TestCompareInChromium(t *testing.T) {
	a, b := load(t, "failed"), load(t, "aborted")
	file := filepath.Join(t.TempDir(), "compare.html")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.Compare(f, a, b, filepath.Dir(file)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := open(t, file, "#verdict-b")
	assertOffline(t, p, file)
	if !strings.Contains(p.verdict, "ABORTED") {
		t.Errorf("second verdict shown: %q", p.verdict)
	}
	if got := p.series["latency"]; len(got) != 2 || !strings.HasSuffix(got[0], "p99") || !strings.HasSuffix(got[1], "p99") {
		t.Errorf("latency chart series: %q, want both runs' p99", got)
	}
	artifact(t, "compare.png", p.shot)
}

// The checks above can fail: a page that fetches something and writes to
// the console is caught.
func TestChromiumSeesRequestsAndConsole(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leaky.html")
	_ = os.WriteFile(file, []byte(`<!doctype html><title>x</title><p id="verdict">PASSED</p><img src="http://127.0.0.1:9/pixel.png"><script>console.error("boom")</script>`), 0o644)
	p := open(t, file, "#verdict")
	var fetched bool
	for _, u := range p.requests {
		fetched = fetched || strings.HasPrefix(u, "http://127.0.0.1:9/")
	}
	if !fetched || len(p.console) == 0 {
		t.Fatalf("requests %q, console %q: the browser checks see nothing", p.requests, p.console)
	}
}
