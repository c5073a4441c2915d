package load_test

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/load"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bothEngines runs test once with the event loops that send plain HTTP
// to an address, and once with the goroutine workers that send the rest.
func bothEngines(t *testing.T, test func(t *testing.T)) {
	t.Run("event loops", test)
	t.Run("goroutine workers", func(t *testing.T) {
		load.UseGoroutineWorkers(t)
		test(t)
	})
}

// run drives cfg for d and returns the results.
func run(t *testing.T, cfg load.Config, d time.Duration) []load.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []load.Result
	if err := load.Run(ctx, cfg, func(r load.Result) { out = append(out, r) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryRequestIsCounted(t *testing.T) {
	bothEngines(t, func(t *testing.T) {
		var got, failed atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if got.Add(1)%2 == 0 {
				failed.Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		defer srv.Close()
		start := time.Now()
		res := run(t, load.Config{Rate: 200, Requests: []load.Request{{URL: srv.URL}}}, time.Second)
		elapsed := time.Since(start)
		errs := 0
		for _, r := range res {
			if r.Failed() {
				errs++
			}
		}
		if int64(len(res)) != got.Load() || int64(errs) != failed.Load() {
			t.Fatalf("results: %d requests, %d errors; the server saw %d requests, answered %d with 503", len(res), errs, got.Load(), failed.Load())
		}
		// An open model sends at the rate, never above it.
		if limit := int(200*elapsed.Seconds()) + 2; len(res) == 0 || len(res) > limit {
			t.Fatalf("%d requests in %v at 200/s, want 1..%d", len(res), elapsed, limit)
		}
	})
}

// TestLatencyCountsFromIntendedStart: with one worker and a server that
// takes 50 ms, requests due every 10 ms queue up; that wait is latency the
// system caused, and must be in the figures.
func TestLatencyCountsFromIntendedStart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // the slow system under test
	}))
	defer srv.Close()
	res := run(t, load.Config{Rate: 100, MaxWorkers: 1, Requests: []load.Request{{URL: srv.URL}}}, 600*time.Millisecond)
	s := load.NewStats()
	for _, r := range res {
		s.Add(r)
	}
	if len(res) < 3 {
		t.Fatalf("only %d results", len(res))
	}
	// Served one at a time, the n-th request waits about n×40 ms more than
	// it was due; a measure from the actual send would stay near 50 ms.
	if sum := s.Summary(time.Second); sum.Max < 2*50*time.Millisecond {
		t.Fatalf("max latency %v with requests queued behind a 50 ms server, want >= 100ms", sum.Max)
	}
}

func TestTimeoutIsAnErrorAndCountsItsTime(t *testing.T) {
	bothEngines(t, func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		res := run(t, load.Config{Rate: 20, Timeout: 100 * time.Millisecond, Requests: []load.Request{{URL: srv.URL}}}, 300*time.Millisecond)
		if len(res) == 0 {
			t.Fatal("no results")
		}
		for _, r := range res {
			if !r.Failed() || r.Latency < 100*time.Millisecond {
				t.Fatalf("timed-out request: %+v, want failed with latency >= the 100ms timeout", r)
			}
		}
	})
}

func TestWeightsShareTheRate(t *testing.T) {
	var a, b atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/a", func(http.ResponseWriter, *http.Request) { a.Add(1) })
	mux.HandleFunc("/b", func(http.ResponseWriter, *http.Request) { b.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res := run(t, load.Config{Rate: 400, Seed: 1, Requests: []load.Request{
		{Name: "a", URL: srv.URL + "/a", Weight: 3},
		{Name: "b", URL: srv.URL + "/b", Weight: 1},
	}}, time.Second)
	byName := map[string]int64{}
	for _, r := range res {
		byName[r.Request]++
	}
	if byName["a"] != a.Load() || byName["b"] != b.Load() {
		t.Fatalf("results by name %v, server saw a=%d b=%d", byName, a.Load(), b.Load())
	}
	n := float64(a.Load() + b.Load())
	// Binomial(n, 3/4): 6 standard deviations either side.
	sd := 6 * 0.433 * math.Sqrt(n)
	if got := float64(a.Load()); n < 50 || got < 0.75*n-sd || got > 0.75*n+sd {
		t.Fatalf("a got %v of %v requests with weight 3 of 4", got, n)
	}
}

// Two requests with the same method and URL (a cheap and a dear order,
// say) keep their own names, and the server sees only the requests' own
// headers: nothing the engine uses to tell hits apart.
func TestSameURLDifferentRequests(t *testing.T) {
	var mu sync.Mutex
	byBody := map[string]int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		for k := range r.Header {
			if k != "Content-Type" && k != "Content-Length" && k != "Accept-Encoding" && k != "User-Agent" {
				t.Errorf("the server saw header %s: %q", k, r.Header.Get(k))
			}
		}
		mu.Lock()
		byBody[string(b)]++
		mu.Unlock()
	}))
	defer srv.Close()
	json := http.Header{"Content-Type": {"application/json"}}
	res := run(t, load.Config{Rate: 400, Seed: 1, Requests: []load.Request{
		{Name: "cheap", Method: "POST", URL: srv.URL + "/checkout", Header: json, Body: []byte(`{"product_id": 4}`)},
		{Name: "dear", Method: "POST", URL: srv.URL + "/checkout", Header: json, Body: []byte(`{"product_id": 2}`)},
	}}, time.Second)
	byName := map[string]int64{}
	for _, r := range res {
		byName[r.Request]++
	}
	mu.Lock()
	defer mu.Unlock()
	if len(res) < 50 || byName["cheap"] != byBody[`{"product_id": 4}`] || byName["dear"] != byBody[`{"product_id": 2}`] || len(byName) != 2 {
		t.Fatalf("%d results by name %v; the server saw by body %v", len(res), byName, byBody)
	}
}

// A server that closes idle connections (and one that closes each after
// its answer) costs no error: a kept-alive connection found closed before
// any answer came is replaced, and the request sent again once.
func TestClosedIdleConnectionsAreNoErrors(t *testing.T) {
	bothEngines(t, func(t *testing.T) {
		for name, configure := range map[string]func(*httptest.Server){
			"idle timeout":     func(s *httptest.Server) { s.Config.IdleTimeout = time.Millisecond },
			"connection close": func(s *httptest.Server) { s.Config.SetKeepAlivesEnabled(false) },
		} {
			t.Run(name, func(t *testing.T) {
				var got atomic.Int64
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
				configure(srv)
				srv.Start()
				defer srv.Close()
				res := run(t, load.Config{Rate: 50, MaxWorkers: 2, Requests: []load.Request{{Method: "POST", URL: srv.URL, Body: []byte("x")}}}, time.Second)
				for _, r := range res {
					if r.Failed() {
						t.Fatalf("%s: %+v", name, r)
					}
				}
				if len(res) < 10 || int64(len(res)) != got.Load() {
					t.Fatalf("%d results, the server answered %d", len(res), got.Load())
				}
			})
		}
	})
}

func TestSummary(t *testing.T) {
	s := load.NewStats()
	for i := 1; i <= 100; i++ {
		code := 200
		if i%10 == 0 {
			code = 500
		}
		s.Add(load.Result{Latency: time.Duration(i) * time.Millisecond, Code: code})
	}
	sum := s.Summary(10 * time.Second)
	if sum.Count != 100 || sum.Errors != 10 || sum.ErrorRate != 0.1 || sum.Throughput != 9 {
		t.Fatalf("summary %+v", sum)
	}
	near := func(got, want time.Duration) bool { return got >= want-want/100 && got <= want+want/100 }
	if !near(sum.P50, 50*time.Millisecond) || !near(sum.P99, 99*time.Millisecond) || !near(sum.Max, 100*time.Millisecond) {
		t.Fatalf("p50 %v p99 %v max %v, want 50ms 99ms 100ms within 1%%", sum.P50, sum.P99, sum.Max)
	}
}

// TestIntendedStartIsWhenTheRequestWasDue: against a fast server at a low
// rate, latency must be far below the gap between requests; counting from
// the wrong due time would add about one gap to every request.
func TestIntendedStartIsWhenTheRequestWasDue(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	res := run(t, load.Config{Rate: 10, Requests: []load.Request{{URL: srv.URL}}}, 700*time.Millisecond)
	s := load.NewStats()
	for _, r := range res {
		s.Add(r)
		if r.Latency < 0 || r.Sent.Before(r.Intended.Add(-time.Millisecond)) {
			t.Fatalf("request sent at %v, before it was due at %v", r.Sent, r.Intended)
		}
	}
	if p50 := s.Summary(time.Second).P50; len(res) < 3 || p50 > 50*time.Millisecond {
		t.Fatalf("p50 %v over %d requests to an instant server at 10/s, want far below the 100ms gap", p50, len(res))
	}
}

// connCounter counts the connections a test server accepts.
func connCounter(srv *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

// At a rate no machine reaches against a server on the same cores, the
// CPU holds the rate back, not the workers: more of them would only cost
// each request more (and the server a connection each), so the engine
// keeps few, where one that adds a worker whenever every one is busy
// opens MaxWorkers connections.
func TestFewWorkersWhenTheCPUIsTheLimit(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()
	res := run(t, load.Config{Rate: 1e6, Requests: []load.Request{{URL: srv.URL}}}, 1500*time.Millisecond)
	if len(res) < 1000 {
		t.Fatalf("%d results in 1.5 s", len(res))
	}
	if n := conns.Load(); n > 64 {
		t.Fatalf("%d connections for %d requests to an instant server at an unreachable rate, want <= 64", n, len(res))
	}
}

// A service that takes long needs a worker for each request in flight
// (200/s × 250 ms = 50): the engine adds them at once, so the service sees
// the rate and requests are sent when due.
func TestWorkersForASlowService(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(250 * time.Millisecond) // the slow service under test
	}))
	defer srv.Close()
	res := run(t, load.Config{Rate: 200, Requests: []load.Request{{URL: srv.URL}}}, 1500*time.Millisecond)
	checkPaced(t, res, 200, 1500*time.Millisecond)
}

// A service whose answers take 20 ms at 1,000/s needs 20 workers, more
// than a run starts with: the engine's probes find that more workers raise
// the rate.
func TestWorkersForAModeratelySlowService(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	res := run(t, load.Config{Rate: 1000, Requests: []load.Request{{URL: srv.URL}}}, 1500*time.Millisecond)
	checkPaced(t, res, 1000, 1500*time.Millisecond)
}

// checkPaced fails unless res has about rate×d requests and, past the
// first half second, requests were sent within 100 ms (two of the engine's
// looks) of when they were due.
func checkPaced(t *testing.T, res []load.Result, rate float64, d time.Duration) {
	t.Helper()
	want := rate * d.Seconds()
	if n := float64(len(res)); n < 0.9*want || n > want+2 {
		t.Fatalf("%v results in %v at %v/s, want about %v", n, d, rate, want)
	}
	var first time.Time
	for _, r := range res {
		if first.IsZero() || r.Intended.Before(first) {
			first = r.Intended
		}
	}
	late := 0
	for _, r := range res {
		if r.Failed() {
			t.Fatalf("failed: %+v", r)
		}
		if r.Intended.Sub(first) > 500*time.Millisecond && r.Sent.Sub(r.Intended) > 100*time.Millisecond {
			late++
		}
	}
	if late > len(res)/100 {
		t.Fatalf("%d of %d requests sent more than 100 ms after they were due, after the first 0.5 s", late, len(res))
	}
}

// TestFlightSeesAHangAsItHangs: a request that hangs is listed as pending,
// with its intended start, while it hangs, and no longer once it ends.
func TestFlightSeesAHangAsItHangs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	var f load.Flight
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var mu sync.Mutex
	finished := 0
	go func() {
		defer close(done)
		_ = load.Run(ctx, load.Config{Rate: 20, Timeout: 30 * time.Second, Flight: &f, Requests: []load.Request{{Name: "slow", URL: srv.URL}}}, func(load.Result) {
			mu.Lock()
			finished++
			mu.Unlock()
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	var pending []load.Pending
	for {
		pending = f.Pending(time.Now())
		if len(pending) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending = %d after 10 s of requests that hang, want them listed", len(pending))
		}
		time.Sleep(10 * time.Millisecond)
	}
	oldest := time.Now()
	for _, p := range pending {
		if p.Request != "slow" {
			t.Errorf("pending request named %q", p.Request)
		}
		if p.Intended.Before(oldest) {
			oldest = p.Intended
		}
	}
	if age := time.Since(oldest); age < 200*time.Millisecond {
		t.Errorf("the oldest pending request is %v old, want the age of a hang (5 requests at 20/s)", age)
	}
	mu.Lock()
	if finished != 0 {
		t.Errorf("%d requests finished against a server that answers none", finished)
	}
	mu.Unlock()
	close(release)
	cancel()
	<-done
	if n := len(f.Pending(time.Now())); n != 0 {
		t.Errorf("%d pending after the run ended", n)
	}
}
