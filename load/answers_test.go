package load_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline/faultline/load"
)

// Answers of every shape a server sends are read whole, by both engines:
// the event loops read simple ones themselves and hand the rest (chunked,
// 1xx first, a head longer than their buffer) to net/http's reader; each
// request is counted once, with its status, and none is an error but the
// 5xx. A connection the answer leaves open carries the next request:
// requests far outnumber connections.
func TestAnswersOfEveryShape(t *testing.T) {
	shapes := []struct {
		name    string
		method  string
		code    int
		handler http.HandlerFunc
	}{
		{"simple", "GET", 200, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }},
		{"chunked", "GET", 200, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("first"))
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte(strings.Repeat("x", 10_000)))
		}},
		{"early hints", "GET", 201, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		}},
		{"long head", "GET", 200, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Long", strings.Repeat("y", 6000))
			_, _ = w.Write([]byte("ok"))
		}},
		{"large body", "GET", 200, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "300000")
			_, _ = w.Write([]byte(strings.Repeat("z", 300_000)))
		}},
		{"head", "HEAD", 200, func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "1000") }},
		{"until close", "GET", 200, func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 200 OK\r\n\r\nthe body runs until the connection closes")
			_ = brw.Flush()
		}},
		{"server error", "GET", 503, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }},
	}
	bothEngines(t, func(t *testing.T) {
		for _, shape := range shapes {
			t.Run(shape.name, func(t *testing.T) {
				var got atomic.Int64
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got.Add(1)
					shape.handler(w, r)
				}))
				conns := connCounter(srv)
				srv.Start()
				defer srv.Close()
				res := run(t, load.Config{Rate: 100, Requests: []load.Request{{Method: shape.method, URL: srv.URL}}}, 300*time.Millisecond)
				if len(res) < 5 || int64(len(res)) != got.Load() {
					t.Fatalf("%d results, the server answered %d", len(res), got.Load())
				}
				for _, r := range res {
					if r.Code != shape.code || r.Failed() != (shape.code >= 500) {
						t.Fatalf("result %+v, want code %d", r, shape.code)
					}
				}
				if n := conns.Load(); shape.name != "until close" && n > int64(len(res)/2) {
					t.Fatalf("%d connections for %d requests: kept-alive connections were not used again", n, len(res))
				}
			})
		}
	})
}

// A server that is not there, one that closes the connection without an
// answer, and one that cuts its answer short are errors that say so.
func TestNoAnswerIsAnError(t *testing.T) {
	bothEngines(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		_ = ln.Close()
		hangUp := answering(t, func(c net.Conn) {})
		cutShort := answering(t, func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut")) })
		for name, c := range map[string]struct{ addr, err string }{
			"refused":   {closed, "connect: connection refused"},
			"hang up":   {hangUp, "EOF"},
			"cut short": {cutShort, "unexpected EOF"},
		} {
			res := run(t, load.Config{Rate: 50, Requests: []load.Request{{URL: "http://" + c.addr + "/"}}}, 200*time.Millisecond)
			if len(res) == 0 {
				t.Fatalf("%s: no results", name)
			}
			for _, r := range res {
				if !r.Failed() || !strings.Contains(r.Err, c.err) {
					t.Fatalf("%s: result %+v, want failed with %q", name, r, c.err)
				}
			}
		}
	})
}

// answering serves each connection by reading one request head and then
// calling answer, and closes it; it returns the server's address.
func answering(t *testing.T, answer func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				answer(c)
			}
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

// A long answer still coming when its timeout ends is a timeout, however
// fast its bytes come: reading it gives the clock its turn.
func TestALongAnswerTimesOut(t *testing.T) {
	const size = 256 << 20 // no loopback carries it in 20 ms
	chunk := make([]byte, 1<<20)
	bothEngines(t, func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			for range size / len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return // the client gave up
				}
			}
		}))
		defer srv.Close()
		res := run(t, load.Config{Rate: 5, Timeout: 20 * time.Millisecond, Requests: []load.Request{{URL: srv.URL}}}, 100*time.Millisecond)
		if len(res) != 1 || !res[0].Failed() || !strings.Contains(res[0].Err, "timeout") {
			t.Fatalf("results %+v, want one timeout", res)
		}
	})
}

// A run that ends while its next request is not yet due returns at once:
// the request is never sent, as it was never due.
func TestRunEndsBeforeTheNextRequestIsDue(t *testing.T) {
	bothEngines(t, func(t *testing.T) {
		var got atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		n := 0
		// One request now, the next in 60 s.
		if err := load.Run(ctx, load.Config{Rate: 1.0 / 60, Requests: []load.Request{{URL: srv.URL}}}, func(load.Result) { n++ }); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 30*time.Second || n != 1 || got.Load() != 1 {
			t.Fatalf("Run took %v with %d results (the server saw %d), want it back well before the second request was due, with one", took, n, got.Load())
		}
	})
}

// A panic in fn ends the run, and Run panics with it in the caller's
// goroutine, once every goroutine of the run has exited (goleak checks):
// a caller that recovers (the runner does, and rolls back) is not ended
// with the process.
func TestAPanicInFnReachesRunsCaller(t *testing.T) {
	bothEngines(t, func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var p any
		func() {
			defer func() { p = recover() }()
			_ = load.Run(ctx, load.Config{Rate: 100, Requests: []load.Request{{URL: srv.URL}}}, func(load.Result) { panic("the handler broke") })
		}()
		if msg, _ := p.(string); !strings.Contains(msg, "the handler broke") || ctx.Err() != nil {
			t.Fatalf("Run panicked with %v (the run's context: %v), want the handler's panic before the run's end", p, ctx.Err())
		}
	})
}
