package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// Request is one kind of request of the traffic. It is an HTTP request
// (Method, URL, Header, Body) unless it sets one of TCP, Redis, SQL, DNS
// or GRPC, which makes it that kind instead (and then the HTTP fields
// must be empty).
type Request struct {
	// Name scopes metrics ("latency p99 of checkout"); may be empty.
	Name string
	// Weight is the request's share of the rate; when every weight is 0
	// the requests share it equally.
	Weight float64

	// Method is the HTTP method; empty means GET.
	Method string
	// URL is an http or https URL.
	URL    string
	Header http.Header
	Body   []byte

	TCP   *TCP
	Redis *Redis
	SQL   *SQL
	DNS   *DNS
	GRPC  *GRPC
}

// Kind is what a request speaks.
type Kind uint8

// The kinds of request; the zero Kind is HTTP.
const (
	KindHTTP Kind = iota
	KindTCP
	KindRedis
	KindSQL
	KindDNS
	KindGRPC
)

var kindNames = [...]string{"http", "tcp", "redis", "sql", "dns", "grpc"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Kind is the request's kind: the one of TCP, Redis, SQL, DNS and GRPC
// it sets, else HTTP. (Run refuses a request that sets two.)
func (r Request) Kind() Kind {
	switch {
	case r.TCP != nil:
		return KindTCP
	case r.Redis != nil:
		return KindRedis
	case r.SQL != nil:
		return KindSQL
	case r.DNS != nil:
		return KindDNS
	case r.GRPC != nil:
		return KindGRPC
	}
	return KindHTTP
}

// Config describes the traffic.
type Config struct {
	// Rate is requests per second, > 0.
	Rate float64
	// Timeout bounds each request, of every kind, from when it is sent;
	// zero means 5 s.
	Timeout time.Duration
	// Requests are picked at random by weight, per request.
	Requests []Request
	// Seed makes the choice of requests replayable: the n-th request of a
	// run is the same for the same seed, whatever the timing.
	Seed int64
	// MaxWorkers bounds the requests in flight; zero means 1,024. Past it
	// the generator falls behind its rate, and since latency runs from each
	// request's intended start, the figures show it. The engine starts
	// fewer and adds workers only while they raise the rate (see Run).
	MaxWorkers uint64
	// Flight, if not nil, tells while the run goes which requests are due
	// and not finished.
	Flight *Flight
}

// Result is one request's outcome.
type Result struct {
	// Request is the Request's Name.
	Request string
	Kind    Kind
	// Intended is when the request was due by the rate.
	Intended time.Time
	// Sent is when it was actually sent.
	Sent time.Time
	// Latency runs from Intended to the end of the answer (or the error);
	// a timed-out request counts its time until the timeout.
	Latency time.Duration
	// Code is the answer's status code in its kind's protocol: the HTTP
	// status (0 without an answer), the DNS RCODE (-1 without an answer),
	// the gRPC status code; 0 for tcp, redis and sql, which have none.
	Code int
	// Err says why the request failed, empty when it did not: a transport
	// error, a timeout, the status line of an HTTP 5xx, a Redis error
	// reply, a failed query, a DNS RCODE that counts as an error, a gRPC
	// status other than OK, a health check that is not SERVING, a TCP
	// reply that is not the one expected.
	Err string
}

// Failed reports whether the result counts as an error. For HTTP: no
// answer (a transport error, a timeout) or a 5xx status, by Code, so that
// a Result made of a Code alone says it. For the other kinds: Err is set.
func (r Result) Failed() bool {
	if r.Kind == KindHTTP {
		return r.Code == 0 || r.Code >= 500
	}
	return r.Err != ""
}

// Run sends requests at cfg.Rate until ctx is done and passes every result
// to fn, one call at a time (never two at once), in the order they
// finish. It returns once every request it sent has finished, every
// connection and pool it opened is closed and every goroutine it started
// has exited. A Config it cannot run is an error before anything is sent
// (every problem at once). A panic in fn, or in a goroutine of Run's own,
// ends the run, and Run panics with it (and its stack) once the rest has
// finished: in its caller's goroutine, where it can be recovered.
//
// Request n (from 0) is due at n/Rate after the start, and a worker sends
// it then, or as soon as one is free when every worker is busy: latency
// runs from the due time in either case. The engine starts with a few
// workers and adds more, up to MaxWorkers, while requests wait for one and
// more workers raise the rate: at once when the requests in flight take
// long (a stall, a slow service: the open model needs a worker for each),
// and by a probe that is undone when it gains nothing (when the machine's
// CPU, not the workers, holds the rate back, more workers only cost each
// request more).
func Run(ctx context.Context, cfg Config, fn func(Result)) error {
	var errs []error
	if cfg.Rate <= 0 || math.IsInf(cfg.Rate, 0) || math.IsNaN(cfg.Rate) {
		errs = append(errs, fmt.Errorf("load: rate must be > 0, got %v", cfg.Rate))
	}
	if len(cfg.Requests) == 0 {
		errs = append(errs, errors.New("load: no requests"))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = 1024
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	ds, err := newDoers(cfg.Requests, cfg.Timeout)
	if err != nil {
		return err
	}
	defer ds.close()
	ctx, end := context.WithCancel(ctx)
	defer end()
	e := &engine{
		requests: cfg.Requests,
		doers:    ds.doers,
		kinds:    ds.kinds,
		timeout:  cfg.Timeout,
		period:   float64(time.Second) / cfg.Rate,
		pick:     newPicker(cfg.Requests, cfg.Seed),
		fn:       fn,
		done:     ctx.Done(),
		end:      end,
		max:      int(min(cfg.MaxWorkers, 1<<20)),
		flight:   cfg.Flight,
	}
	if !goroutinesOnly {
		e.loops = newLoops(e)
	}
	e.run()
	if p := e.panicked.Load(); p != nil {
		panic(*p)
	}
	return nil
}

// goroutinesOnly makes every run send its requests from goroutine
// workers, even those the event loops could send: tests of both set it.
var goroutinesOnly bool

// picker chooses request indices by weight: the choice for request n is a
// function of the seed and n alone.
type picker struct {
	seed uint64
	cum  []float64 // cumulative weights
}

func newPicker(reqs []Request, seed int64) picker {
	p := picker{seed: uint64(seed), cum: make([]float64, len(reqs))}
	equal := true
	for _, q := range reqs {
		equal = equal && q.Weight == 0
	}
	total := 0.0
	for i, q := range reqs {
		w := q.Weight
		if equal {
			w = 1
		}
		total += w
		p.cum[i] = total
	}
	return p
}

func (p picker) pick(n uint64) int {
	if len(p.cum) == 1 {
		return 0
	}
	// SplitMix64: the n-th output of the generator seeded with seed.
	z := p.seed + (n+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	x := float64(z>>11) / (1 << 53) * p.cum[len(p.cum)-1]
	for i, c := range p.cum {
		if x < c {
			return i
		}
	}
	return len(p.cum) - 1
}
