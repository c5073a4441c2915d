package load

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// engine paces the requests of one Run and runs its workers.
//
// There is no pacer goroutine and no channel between it and the workers:
// each worker takes the next request number n itself, waits until n is
// due (or not at all when it is late), sends it, hands the result to fn
// and takes the next. So each request's due time is exact (n periods after
// the start, not a tick that drifts) and pacing costs a request one atomic
// increment. When the run has event loops (loop_linux.go), a worker is a
// slot of a loop, which does the same with its slots; the controller is
// the same for both.
type engine struct {
	requests []Request
	doers    []doer // one a request
	kinds    []Kind // one a request
	timeout  time.Duration
	period   float64 // nanoseconds between two requests
	pick     picker
	done     <-chan struct{}

	began  time.Time
	next   atomic.Uint64 // the next request number to take
	retire atomic.Int64  // workers to stop, after the request they are on

	mu       sync.Mutex // one fn call at a time
	fn       func(Result)
	finished uint64 // requests whose result fn has had

	workers sync.WaitGroup
	max     int
	flight  *Flight // nil: nobody asks
	loops   *loops  // nil: goroutine workers send the requests

	end      context.CancelFunc // ends the run early: a goroutine of it panicked
	panicked atomic.Pointer[string]
}

// catch, deferred in every goroutine the engine starts, turns a panic
// there (in fn, or a bug) into the end of the run and a panic of Run in
// its caller's goroutine, where the caller can recover (the runner does,
// and rolls back) instead of the process ending with faults in place.
func (e *engine) catch() {
	if p := recover(); p != nil {
		msg := fmt.Sprintf("load: %v\n%s", p, debug.Stack())
		e.panicked.CompareAndSwap(nil, &msg)
		e.end()
	}
}

// Worker control. A run starts initialWorkers and looks every lookEvery
// whether requests wait for a worker (one is more than lateness late).
// Then either the requests in flight take long (by Little's law, in
// flight / completed per second > stallLatency: a stall, a slow service),
// and more workers are what an open model needs, so as many are added as
// requests wait, and a quarter more; or they are quick, and only a test
// says whether the workers or the machine hold the rate back: up to as
// many workers again are added for a probe window, and kept only if the
// completed rate rose by at least half as much as the workers did (or
// nothing waits any more). A probe that gains nothing is undone, and the
// next waits a while (doubling, up to maxHold): on a loaded machine more
// workers only share the same cores, each costs the requests more (and the
// server a connection), and the rate falls.
//
// Event loops start with more slots than goroutine workers: a slot costs
// nothing while it waits (it opens a connection only when requests
// overlap), and the more requests a loop has in flight, the more each
// epoll_wait serves: against a server on the same two cores, 16 slots
// took a sixth less CPU per request than 8 (bench/load.sh). Not more: a
// probe doubles them, and every slot a kept probe adds may open a
// connection to the server.
const (
	initialWorkers = 8
	initialSlots   = 16
	lookEvery      = 50 * time.Millisecond
	lateness       = 5 * time.Millisecond
	stallLatency   = 100 * time.Millisecond
	firstHold      = 250 * time.Millisecond
	maxHold        = 8 * time.Second
)

// due is when request n is due.
func (e *engine) due(n uint64) time.Time {
	return e.began.Add(time.Duration(float64(n) * e.period))
}

// dueBy is how many requests are due at t.
func (e *engine) dueBy(t time.Time) uint64 {
	d := t.Sub(e.began)
	if d < 0 {
		return 0
	}
	return uint64(float64(d)/e.period) + 1
}

func (e *engine) run() {
	e.began = time.Now()
	if e.flight != nil {
		e.flight.attach(e)
		defer e.flight.detach()
	}
	c := controller{e: e}
	initial := initialWorkers
	if e.loops != nil {
		e.loops.start()
		initial = initialSlots
	}
	c.spawn(min(initial, e.max))
	c.run()
	if e.loops != nil {
		e.loops.stop()
	}
	e.workers.Wait()
}

// controller adds and retires workers; one goroutine (Run's) runs it.
type controller struct {
	e       *engine
	running int // workers started and not told to retire

	samples []sample // one a look, the latest last

	probing    bool
	probeFrom  int           // workers before the probe
	probeAdded int           // workers it added
	probeRate  float64       // completed per second before it
	probeSpan  time.Duration // what probeRate and the rate after are measured over
	probeEnd   time.Time     // when it is judged

	hold      time.Duration
	holdUntil time.Time
}

// sample is how many requests had finished at a moment.
type sample struct {
	at       time.Time
	finished uint64
}

// keepSamples covers the longest span the controller measures over: half
// a probe window of four times stallLatency, in looks.
const keepSamples = int(2*stallLatency/lookEvery) + 2

// spawn adds n workers: slots of the event loops, when the run has them.
func (c *controller) spawn(n int) {
	c.running += n
	if c.e.loops != nil {
		c.e.loops.add(n)
		return
	}
	c.e.workers.Add(n)
	for range n {
		go c.e.work()
	}
}

// retire stops n workers, each after the request it is on.
func (c *controller) retire(n int) {
	if c.e.loops != nil {
		c.e.loops.retire(n)
		return
	}
	c.e.retire.Add(int64(n))
}

// rate is the completed requests per second over the last span (at least
// one look).
func (c *controller) rate(span time.Duration) float64 {
	last := c.samples[len(c.samples)-1]
	first := c.samples[0]
	for i := len(c.samples) - 2; i >= 0; i-- {
		first = c.samples[i]
		if last.at.Sub(first.at) >= span {
			break
		}
	}
	d := last.at.Sub(first.at)
	if d <= 0 {
		return 0
	}
	return float64(last.finished-first.finished) / d.Seconds()
}

// run looks every lookEvery until done; it returns before any worker can
// be added after done, so Run may then wait for them all.
func (c *controller) run() {
	e := c.e
	tick := time.NewTicker(lookEvery)
	defer tick.Stop()
	c.samples = append(c.samples, sample{at: e.began})
	for {
		select {
		case <-e.done:
			return
		case now := <-tick.C:
			e.mu.Lock()
			finished := e.finished
			e.mu.Unlock()
			if len(c.samples) == keepSamples {
				c.samples = append(c.samples[:0], c.samples[1:]...)
			}
			c.samples = append(c.samples, sample{at: now, finished: finished})
			c.look(now, finished)
		}
	}
}

func (c *controller) look(now time.Time, finished uint64) {
	e := c.e
	taken := e.next.Load()
	waiting := int64(e.dueBy(now.Add(-lateness))) - int64(taken)
	if c.probing {
		if now.Before(c.probeEnd) {
			return
		}
		c.probing = false
		after := c.rate(c.probeSpan)
		if waiting <= 0 || after >= c.probeRate*(1+0.5*float64(c.probeAdded)/float64(c.probeFrom)) {
			c.hold = 0
		} else {
			c.running -= c.probeAdded
			c.retire(c.probeAdded)
			c.hold = min(max(2*c.hold, firstHold), maxHold)
			c.holdUntil = now.Add(c.hold)
		}
		return
	}
	if waiting <= 0 || c.running >= e.max {
		return
	}
	// Requests wait for a worker, so (nearly) every worker is busy:
	// taken-finished are in flight.
	x := c.rate(2 * lookEvery)
	inFlight := float64(taken - finished)
	if x*stallLatency.Seconds() < inFlight || x <= 0 {
		// A quarter more than wait now, so that the next few due do not.
		c.spawn(int(min(waiting+int64(c.running)/4, int64(e.max-c.running))))
		return
	}
	if now.Before(c.holdUntil) {
		return
	}
	// The probe's new workers reach their pace after one latency (in
	// flight / rate): the rates compared are the last half of a window of
	// four latencies (two looks at least) and as long a span before it.
	window := max(2*lookEvery, 4*time.Duration(inFlight/x*float64(time.Second)))
	c.probing = true
	c.probeFrom, c.probeAdded = c.running, int(min(waiting, int64(c.running), int64(e.max-c.running)))
	c.probeSpan = window / 2
	c.probeRate = c.rate(c.probeSpan)
	c.probeEnd = now.Add(window)
	c.spawn(c.probeAdded)
}

func (e *engine) work() {
	defer e.workers.Done()
	defer e.catch()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !e.retiring() {
		n := e.next.Add(1) - 1
		due := e.due(n)
		now := time.Now()
		if wait := due.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-e.done:
				return
			case <-timer.C:
			}
			now = time.Now()
		} else {
			select {
			case <-e.done:
				return
			default:
			}
		}
		e.hit(n, due, now)
	}
}

// retiring reports whether this worker is one of those told to stop.
func (e *engine) retiring() bool {
	for {
		r := e.retire.Load()
		if r <= 0 {
			return false
		}
		if e.retire.CompareAndSwap(r, r-1) {
			return true
		}
	}
}

// hit sends request n, due at due, now (sent), and hands its result to
// fn. A late request is sent at the time its worker read to see it was
// late: one clock read a request less.
func (e *engine) hit(n uint64, due, sent time.Time) {
	i := e.pick.pick(n)
	if e.flight != nil {
		e.flight.start(n, Pending{Request: e.requests[i].Name, Intended: due})
	}
	code, err := e.doers[i].do(sent.Add(e.timeout))
	e.record(n, i, due, sent, code, err)
}

// record hands the result of request n (of Request i), which ends now, to
// fn.
func (e *engine) record(n uint64, i int, due, sent time.Time, code int, err error) {
	end := time.Now()
	if e.flight != nil { // finished: its result, not its age, counts from now
		e.flight.end(n)
	}
	r := Result{Request: e.requests[i].Name, Kind: e.kinds[i], Intended: due, Sent: sent, Latency: end.Sub(due), Code: code}
	if err != nil {
		r.Err = describe(err, e.timeout)
	} else if r.Kind == KindHTTP && code >= 500 {
		r.Err = fmt.Sprintf("%d %s", code, http.StatusText(code))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.finished++
	e.fn(r)
}
