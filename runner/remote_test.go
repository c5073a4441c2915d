package runner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
	"github.com/faultline/faultline/runner"
)

// TestRemoteProxyTarget drives a proxy of another server through its API:
// the run's toxic is named for the run, is there during injection, and is
// gone afterwards; the user's own toxic is left alone.
func TestRemoteProxyTarget(t *testing.T) {
	srv, api := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	p, err := srv.Create(proxy.ProxyConfig{Name: "db", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddToxic(proxy.Toxic{Name: "mine", Effect: proxy.Noop{}}); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
name: remote
targets:
  db: {proxy: {api: %q, name: db}}
faults:
  - {name: slow db, target: db, latency: {delay: 50ms}, direction: both, duration: 600ms}
baseline: 200ms
recovery: 1s
`, api)
	x, err := experiment.Parse("remote.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan []string, 1)
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			var names []string
			for _, tx := range p.Toxics() {
				names = append(names, tx.Name)
			}
			if len(names) == 3 {
				seen <- names
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		seen <- nil
	}()
	res := runFast(t, context.Background(), x)
	if res.Verdict != runner.Passed {
		t.Fatalf("verdict %s (%v)", res.Verdict, res.Reasons)
	}
	during := <-seen
	if len(during) != 3 || !strings.HasPrefix(during[0], "faultline-") || !strings.HasSuffix(during[0], "-slow-db-upstream") {
		t.Fatalf("toxics during injection = %v, want the user's and the run's two, named faultline-RUN-slow-db-STREAM", during)
	}
	if after := p.Toxics(); len(after) != 1 || after[0].Name != "mine" {
		t.Fatalf("toxics after the run = %+v, want only the user's", after)
	}
}

// TestSamplesFile checks that a run writes a line of traffic figures per
// tick, each with its phase.
func TestSamplesFile(t *testing.T) {
	x := slowDependency(t, "100ms")
	dir := filepath.Join(t.TempDir(), "run")
	if _, err := runner.Run(context.Background(), build(t, x, 1), runner.Options{OutDir: dir, Tick: 200 * time.Millisecond, RecoveryWindow: time.Second}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "samples.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	phases := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s runner.Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		phases[s.Phase]++
		if s.Phase == "inject" && s.Requests > 0 && s.P99 <= 0 {
			t.Fatalf("inject sample without latency: %+v", s)
		}
	}
	for _, ph := range []string{"baseline", "inject", "recovery"} {
		if phases[ph] == 0 {
			t.Fatalf("no samples in %s: %v", ph, phases)
		}
	}
	events, err := journal.ReadFile(filepath.Join(dir, "journal.jsonl"))
	if err != nil || !journal.Clean(events) || len(journal.Pending(events)) != 0 {
		t.Fatalf("journal not clean after a passed run: %v", err)
	}
}

// TestRemoteToxicWhoseAnswerIsLostIsRemoved: the API adds the toxic but
// the answer never comes back (the run is interrupted while the POST is in
// flight): the outcome is not known, so the rollback removes the toxic
// as if it had been added, and the journal has nothing left pending. The
// same holds for taking the proxy down.
func TestRemoteToxicWhoseAnswerIsLostIsRemoved(t *testing.T) {
	for _, action := range []string{"latency: {delay: 50ms}", "down: {}"} {
		t.Run(action, func(t *testing.T) {
			srv := proxy.NewServer(proxy.ServerOptions{Seed: 1})
			t.Cleanup(srv.Close)
			p, err := srv.Create(proxy.ProxyConfig{Name: "db", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", Enabled: true})
			if err != nil {
				t.Fatal(err)
			}
			applied := make(chan struct{}, 1)
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost {
					srv.Handler().ServeHTTP(w, r)
					return
				}
				// Apply it, then lose the answer of what injects: wait until
				// the client gives up.
				rec := httptest.NewRecorder()
				srv.Handler().ServeHTTP(rec, r)
				if len(p.Toxics()) > 0 || !p.Enabled() {
					select {
					case applied <- struct{}{}:
					default:
					}
					<-r.Context().Done()
					return
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
			}))
			t.Cleanup(api.Close)
			src := fmt.Sprintf(`
name: lost-answer
targets:
  db: {proxy: {api: %q, name: db}}
faults:
  - {name: f, target: db, %s, duration: 5s}
baseline: 200ms
recovery: 1s
`, api.URL, action)
			x, err := experiment.Parse("lost.yaml", []byte(src), experiment.Options{AllowNoStop: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-applied
				cancel() // Ctrl-C while the POST is in flight
			}()
			dir := filepath.Join(t.TempDir(), "run")
			res, err := runner.Run(ctx, build(t, x, 7), runner.Options{OutDir: dir, Tick: 200 * time.Millisecond, RecoveryWindow: time.Second})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != runner.Aborted || len(p.Toxics()) != 0 || !p.Enabled() {
				t.Fatalf("after the run (verdict %s, %v): toxics %+v, enabled %v; want ABORTED, none and enabled", res.Verdict, res.Reasons, p.Toxics(), p.Enabled())
			}
			events, err := journal.ReadFile(filepath.Join(dir, "journal.jsonl"))
			if err != nil || len(journal.Pending(events)) != 0 {
				t.Fatalf("journal: %v, pending %+v", err, journal.Pending(events))
			}
		})
	}
}
