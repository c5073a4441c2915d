package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Request is one kind of request of the traffic.
type Request struct {
	// Name scopes metrics ("latency p99 of checkout"); may be empty.
	Name   string
	Method string
	URL    string
	Header http.Header
	Body   []byte
	// Weight is the request's share of the rate; when every weight is 0
	// the requests share it equally.
	Weight float64
}

// Config describes the traffic.
type Config struct {
	// Rate is requests per second, > 0.
	Rate float64
	// Timeout bounds each request; zero means 5 s.
	Timeout time.Duration
	// Requests are picked at random by weight, per request.
	Requests []Request
	// Seed makes the choice of requests replayable.
	Seed int64
	// MaxWorkers bounds the requests in flight; zero means 1,024. Past it
	// the generator falls behind its rate, and since latency runs from each
	// request's intended start, the figures show it. More workers cost
	// throughput on few cores.
	MaxWorkers uint64
}

// Result is one request's outcome.
type Result struct {
	Request string
	// Intended is when the request was due by the rate.
	Intended time.Time
	// Sent is when it was actually sent.
	Sent time.Time
	// Latency runs from Intended to the end of the response (or the error);
	// a timed-out request counts its time until the timeout.
	Latency time.Duration
	Code    int
	Err     string
}

// Failed reports whether the result counts as an error: a transport error,
// a timeout or a 5xx status.
func (r Result) Failed() bool { return r.Code == 0 || r.Code >= 500 }

// Run sends requests at cfg.Rate until ctx is done and passes every result
// to fn, from one goroutine, in the order they finish. It returns once
// every request it sent has finished and every goroutine it started has
// exited.
func Run(ctx context.Context, cfg Config, fn func(Result)) error {
	if cfg.Rate <= 0 {
		return fmt.Errorf("load: rate must be > 0, got %v", cfg.Rate)
	}
	if len(cfg.Requests) == 0 {
		return errors.New("load: no requests")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = 1024
	}
	targets := make([]vegeta.Target, len(cfg.Requests))
	for i, r := range cfg.Requests {
		method := r.Method
		if method == "" {
			method = http.MethodGet
		}
		// vegeta builds an http.Request from the target only to hand it to
		// the transport, which sends its own copy of request i instead; the
		// URL's fragment (never sent) says which i, to the transport and in
		// the result, since two requests may share method and URL.
		base, _, _ := strings.Cut(r.URL, "#")
		targets[i] = vegeta.Target{Method: method, URL: base + kindFragment + strconv.Itoa(i)}
	}
	pick := picker(cfg.Requests, cfg.Seed)
	targeter := func(t *vegeta.Target) error {
		*t = targets[pick()]
		return nil
	}
	tr, err := newTransport(cfg.Requests, cfg.Timeout)
	if err != nil {
		return err
	}
	defer tr.close() // its idle connections go when the run ends
	attacker := vegeta.NewAttacker(
		// No client timeout: the transport applies it, without the timer
		// and goroutine net/http's client would add to every request.
		vegeta.Client(&http.Client{Transport: tr}),
		vegeta.MaxWorkers(cfg.MaxWorkers),
		vegeta.MaxBody(0),
		vegeta.Redirects(vegeta.NoFollow),
	)
	period := time.Duration(float64(time.Second) / cfg.Rate)
	pacer := vegeta.ConstantPacer{Freq: 1, Per: period}
	if cfg.Rate >= 1 && cfg.Rate == float64(int(cfg.Rate)) {
		pacer = vegeta.ConstantPacer{Freq: int(cfg.Rate), Per: time.Second}
	}
	began := time.Now()
	results := attacker.Attack(targeter, pacer, 0, "")
	done := ctx.Done()
	for {
		select {
		case <-done:
			attacker.Stop()
			done = nil // keep draining until the attacker closes results
		case res, ok := <-results:
			if !ok {
				return nil
			}
			// The pacer sends hit n (from 0) at (n+1) periods.
			intended := began.Add(time.Duration(res.Seq+1) * period)
			end := res.Timestamp.Add(res.Latency)
			r := Result{
				Request:  cfg.Requests[kindOf(res.URL)].Name,
				Intended: intended,
				Sent:     res.Timestamp,
				Latency:  max(end.Sub(intended), res.Latency),
				Code:     int(res.Code),
				Err:      res.Error,
			}
			fn(r)
		}
	}
}

// picker returns a function choosing a request index by weight.
func picker(reqs []Request, seed int64) func() int {
	if len(reqs) == 1 {
		return func() int { return 0 }
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	total, cum := 0.0, make([]float64, len(reqs))
	equal := true
	for _, q := range reqs {
		equal = equal && q.Weight == 0
	}
	for i, q := range reqs {
		w := q.Weight
		if equal {
			w = 1
		}
		total += w
		cum[i] = total
	}
	var mu sync.Mutex // vegeta's workers call the targeter concurrently
	return func() int {
		mu.Lock()
		x := r.Float64() * total
		mu.Unlock()
		for i, c := range cum {
			if x < c {
				return i
			}
		}
		return len(cum) - 1
	}
}
