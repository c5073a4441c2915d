package load

import (
	"sync"
	"time"
)

// Flight tells, while Run runs, which requests are due and not finished:
// those sent and waiting for their answer, and those due that no worker
// has taken yet. A request that hangs is then seen by its age as it
// hangs, not only once its timeout ends it. Give one in Config.Flight;
// its zero value is ready to use.
type Flight struct {
	mu   sync.Mutex
	e    *engine
	open map[uint64]Pending
}

// Pending is a request due and not finished.
type Pending struct {
	Request  string    // its name
	Intended time.Time // when it was due
}

// maxPending bounds what Pending lists of requests due and not taken.
const maxPending = 100_000

// Pending returns the requests due by now and not finished, in no order.
func (f *Flight) Pending(now time.Time) []Pending {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Pending, 0, len(f.open))
	for _, p := range f.open {
		out = append(out, p)
	}
	if e := f.e; e != nil {
		// Due, and no worker has taken them yet: late already.
		for n := e.next.Load(); n < e.dueBy(now) && len(out) < maxPending; n++ {
			out = append(out, Pending{Request: e.requests[e.pick.pick(n)].Name, Intended: e.due(n)})
		}
	}
	return out
}

func (f *Flight) attach(e *engine) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.e, f.open = e, map[uint64]Pending{}
}

func (f *Flight) detach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.e, f.open = nil, nil
}

func (f *Flight) start(n uint64, p Pending) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open != nil {
		f.open[n] = p
	}
}

func (f *Flight) end(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.open, n)
}
