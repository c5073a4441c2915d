package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The data plane. Each proxied connection is two links, one per stream, and
// each link is one goroutine (its reader) plus, only while bytes wait for a
// due time, a second one (its writer):
//
//	no toxic:  src ─read─▶ chunk ─write─▶ dst, and while a full chunk's worth
//	           is waiting: src ──splice (kernel to kernel)──▶ dst
//
//	toxics:    src ─read─▶ chunk ─▶ toxic 1 … toxic n ─▶ batch ─┬─ due now, queue empty ─▶ write ─▶ dst
//	                                (compute due times,         └─ later ─▶ queue ─▶ writer ─▶ dst
//	                                 split, drop, end)
//
//	           and while a full chunk is waiting, the toxics run over its
//	           length alone (stepBulk): what they pass at once is spliced,
//	           what they drop is read and dropped, else the chunk is read.
//
// Toxics are not goroutines: each one rewrites a batch (pieces of the chunk,
// each with the time it may be written, and how the stream ends), so a link
// with any number of toxics costs the same two goroutines, and an idle link
// holds no buffer: the reader takes one from a pool only when the socket is
// readable. The queue keeps batches in order, so bytes are never reordered.
//
// A change of toxics is published to the link (pending) and the reader is
// woken by an expired read deadline; it adopts the new chain at a chunk
// boundary, before reading more. Every byte read after the change goes
// through the new chain; none is lost or duplicated, because a read that is
// interrupted by a deadline has taken nothing from the socket.

// chunkSize is the most one read takes.
const chunkSize = 256 << 10

// queueLimit bounds the memory a link holds for later writing: the bytes
// and the pieces they are cut into. Before each read the reader waits for
// room for what one read can become, which pushes back on the sender as
// TCP does.
const queueLimit = 8 << 20

// slicedRead is the most one read takes while a slicer is active: a slicer
// may cut every byte into a piece of its own, so a read is kept to what
// maxSlicedMem holds.
const slicedRead = 16 << 10

// pieceMem is what one piece of a batch costs beside its bytes; a batch's
// pieces are appended, so they may hold up to twice that each.
const pieceMem = int(unsafe.Sizeof(piece{}))

// maxBatchMem and maxSlicedMem bound what one read can become: a whole
// pooled chunk cut into pieces of 100 bytes (bandwidth at 1 KB/s), or a
// sliced read cut into pieces of one byte (in a buffer of its own once
// compacted), plus the batch itself.
const (
	maxBatchMem  = chunkSize + (chunkSize/100+2)*2*pieceMem + batchMem
	maxSlicedMem = slicedRead*(1+2*pieceMem) + batchMem
)

// batchMem is what a batch costs beside its pieces and bytes.
const batchMem = int(unsafe.Sizeof(batch{}))

// inlineSlack is how early a piece may be written inline rather than queued.
const inlineSlack = 50 * time.Microsecond

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// farFuture is the due time of bytes held until a toxic is removed
// (bandwidth with rate 0).
var farFuture = time.Unix(1<<40, 0)

var aLongTimeAgo = time.Unix(1, 0)

type endKind uint8

const (
	endNone  endKind = iota
	endEOF           // pass the end of stream on: half-close dst
	endClose         // close the whole connection
	endReset         // close the whole connection with RST
)

type piece struct {
	data []byte
	due  time.Time
}

// batch is what one read becomes after the toxics.
type batch struct {
	buf     *[]byte // pooled; released once written
	pieces  []piece
	end     endKind
	endDue  time.Time
	flushed atomic.Bool // a toxic was removed: write now, whatever the due times
	mem     int         // what the queue counts for it
}

// memory returns what the batch holds: its buffer (or its own bytes, once
// compacted), its pieces, and itself.
func (b *batch) memory() int {
	n := batchMem + cap(b.pieces)*pieceMem
	if b.buf != nil {
		return n + cap(*b.buf)
	}
	return n + b.size()
}

func (b *batch) lastDue() time.Time {
	d := b.endDue
	for _, p := range b.pieces {
		if p.due.After(d) {
			d = p.due
		}
	}
	return d
}

func (b *batch) release() {
	if b.buf != nil {
		bufPool.Put(b.buf)
		b.buf = nil
	}
	b.pieces = nil
}

// toxicState is one toxic's state on one link.
type toxicState struct {
	entry    *toxicEntry
	active   bool      // toxicity drawn for this link
	next     time.Time // bandwidth, slicer: when the next piece may start
	passed   int64     // limit_data
	deadline time.Time // timeout: close when reached
	fired    bool      // reset_peer
}

type link struct {
	c        *conn
	stream   Stream
	src, dst *net.TCPConn
	srcRaw   syscall.RawConn

	// pending is the newest chain published by the proxy and not yet
	// adopted by the reader; wake interrupts the reader's waits.
	pending atomic.Pointer[chain]
	wake    chan struct{}

	// Owned by the reader goroutine.
	states  []*toxicState
	closeAt time.Time // earliest timeout deadline, zero if none

	q queue

	received, sent counter

	// readMax is the most the next read takes: chunkSize, or slicedRead
	// while a slicer is active. Owned by the reader.
	readMax int
}

// publish hands a new chain to the link and wakes its reader.
func (l *link) publish(ch *chain) {
	l.pending.Store(ch)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	_ = l.src.SetReadDeadline(aLongTimeAgo)
}

// adopt switches the reader to the pending chain, if there is one.
func (l *link) adopt() {
	// Loop: a publish that lands between the swap and the deadline reset
	// below leaves pending set, and is adopted on the next turn.
	for {
		ch := l.pending.Swap(nil)
		if ch == nil {
			return
		}
		l.adoptChain(ch)
		_ = l.src.SetReadDeadline(l.closeAt)
	}
}

func (l *link) adoptChain(ch *chain) {
	old := l.states
	l.states = make([]*toxicState, 0, len(ch.toxics))
	now := time.Now()
	changed := false
	for _, e := range ch.toxics {
		var st *toxicState
		for i, o := range old {
			if o != nil && o.entry.serial == e.serial {
				st, old[i] = o, nil
				break
			}
		}
		switch {
		case st == nil:
			st = &toxicState{entry: e, active: e.draw(l.c.p.rand)}
			st.arm(now)
		case st.entry != e: // updated: draw again, keep counts
			changed = true
			st.entry = e
			st.active = e.draw(l.c.p.rand)
			st.fired = false
			st.arm(now)
		}
		l.states = append(l.states, st)
	}
	for _, o := range old {
		if o == nil {
			continue
		}
		changed = true
		if _, ok := o.entry.Effect.(Timeout); ok && o.active {
			// What a timeout held is gone: the connection closes, as in Toxiproxy.
			l.c.close()
		}
	}
	if changed {
		l.q.flush()
	}
	l.updateCloseAt()
}

func (st *toxicState) arm(now time.Time) {
	st.deadline = time.Time{}
	if t, ok := st.entry.Effect.(Timeout); ok && st.active && t.Timeout > 0 {
		st.deadline = now.Add(t.Timeout)
	}
}

func (l *link) updateCloseAt() {
	l.closeAt = time.Time{}
	l.readMax = chunkSize
	for _, st := range l.states {
		if !st.deadline.IsZero() && (l.closeAt.IsZero() || st.deadline.Before(l.closeAt)) {
			l.closeAt = st.deadline
		}
		if _, ok := st.entry.Effect.(Slicer); ok && st.active {
			l.readMax = slicedRead
		}
	}
}

func (l *link) hasActive() bool {
	for _, st := range l.states {
		if st.active {
			return true
		}
	}
	return false
}

// run is the link's reader goroutine. It returns when the stream ended or
// the connection closed.
func (l *link) run() {
	defer l.c.linkDone(l)
	defer l.waitQueue()
	// Deferred last, so it runs first: a panic closes the connection before
	// waitQueue would wait for what the panic left queued.
	defer func() { l.c.p.survive(recover(), l.c) }()
	for {
		l.adopt()
		if l.c.isClosed() {
			return
		}
		if l.step() {
			return
		}
	}
}

// spliceAvailable moves what src has already received to dst kernel to
// kernel, while that is at least a chunk: bulk transfers skip the copy
// through user space, and small messages, which splice would slow down,
// keep the plain read and write. It never waits for more data, so it never
// holds a pipe while idle. It returns true if the link is finished.
func (l *link) spliceAvailable() bool {
	for {
		avail := readable(l.srcRaw)
		if avail < chunkSize {
			return false
		}
		n, err := l.dst.ReadFrom(&io.LimitedReader{R: l.src, N: int64(avail)})
		l.received.Add(n)
		l.sent.Add(n)
		switch {
		case err == nil:
			if n == 0 { // nothing moved: no splice here, let read take it
				return false
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			l.rearm()
			return false
		default:
			l.c.close()
			return true
		}
	}
}

// rearm restores the read deadline after an interruption that no pending
// change explains (a publish that the reader had already adopted). If a
// change is published meanwhile, the next adopt sees it.
func (l *link) rearm() {
	if l.pending.Load() == nil {
		_ = l.src.SetReadDeadline(l.closeAt)
	}
}

func (l *link) endStream() {
	_ = l.dst.CloseWrite()
}

// phantom stands in for bytes not yet read: toxics only cut and time
// pieces, so they can run over lengths alone. It is never written.
var phantom = make([]byte, chunkSize)

// stepBulk handles a full chunk that is already waiting, through active
// toxics, without reading it first: the toxics run over a phantom chunk,
// and if what comes out is due now, the bytes they pass go kernel to
// kernel and the ones they drop are read and dropped; otherwise the chunk
// is read and the pieces take its bytes. It reports whether it handled
// anything, and whether the link is finished.
func (l *link) stepBulk() (handled, finished bool) {
	if l.readMax < chunkSize || readable(l.srcRaw) < chunkSize || !l.q.idle() {
		return false, false
	}
	now := time.Now()
	b := &batch{pieces: []piece{{data: phantom, due: now}}}
	l.received.Add(chunkSize)
	l.applyToxics(b, now)
	// Toxics keep the bytes they pass in order, as a prefix of the chunk.
	pass := b.size()
	defer l.rearm()
	if !b.lastDue().After(now.Add(inlineSlack)) && (b.end == endNone || b.end == endClose) {
		if pass > 0 {
			n, err := l.spliceExactly(pass)
			l.sent.Add(n)
			if err != nil {
				l.c.close()
				return true, true
			}
		}
		if err := l.discard(chunkSize - pass); err != nil {
			l.c.close()
			return true, true
		}
		if b.end == endClose {
			l.c.close()
			return true, true
		}
		return true, false
	}
	bp := bufPool.Get().(*[]byte)
	if err := l.readExactly((*bp)[:chunkSize]); err != nil {
		bufPool.Put(bp)
		l.c.close()
		return true, true
	}
	b.buf = bp
	off := 0
	for i := range b.pieces {
		k := len(b.pieces[i].data)
		b.pieces[i].data = (*bp)[off : off+k]
		off += k
	}
	if !l.deliver(b) {
		return true, true
	}
	return true, b.end != endNone
}

// spliceExactly moves n bytes that src has already received to dst. An
// interrupting deadline (a change of toxics) is cleared and the move goes
// on: these bytes have been through the toxics already.
func (l *link) spliceExactly(n int) (int64, error) {
	var moved int64
	for moved < int64(n) {
		m, err := l.dst.ReadFrom(&io.LimitedReader{R: l.src, N: int64(n) - moved})
		moved += m
		switch {
		case err == nil && m == 0:
			return moved, io.ErrUnexpectedEOF
		case errors.Is(err, os.ErrDeadlineExceeded):
			_ = l.src.SetReadDeadline(time.Time{})
		case err != nil:
			return moved, err
		}
	}
	return moved, nil
}

// readExactly fills p from bytes src has already received.
func (l *link) readExactly(p []byte) error {
	for len(p) > 0 {
		m, err := l.src.Read(p)
		p = p[m:]
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			_ = l.src.SetReadDeadline(time.Time{})
		case err != nil:
			return err
		}
	}
	return nil
}

// discard reads and drops n bytes src has already received.
func (l *link) discard(n int) error {
	if n <= 0 {
		return nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return l.readExactly((*bp)[:n])
}

// step reads one chunk, runs it through the toxics and delivers it. It
// returns true when the link is finished.
func (l *link) step() bool {
	if !l.waitRoom() {
		return true
	}
	if l.hasActive() {
		if handled, finished := l.stepBulk(); handled {
			return finished
		}
	}
	b, err := l.read()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if l.pending.Load() == nil && !l.closeAt.IsZero() && !time.Now().Before(l.closeAt) {
				l.c.close()
				return true
			}
			l.rearm()
			return false
		}
		if err != io.EOF {
			l.c.close()
			return true
		}
		b = &batch{end: endEOF}
	}
	// A change that arrived while we read applies to this chunk too.
	l.adopt()
	now := time.Now()
	for i := range b.pieces {
		b.pieces[i].due = now
	}
	n := b.size()
	l.received.Add(int64(n))
	if !l.hasActive() {
		// No toxic: write at once (behind anything still queued).
		if !l.deliver(b) {
			return true
		}
		if b.end != endNone {
			return true
		}
		return n == chunkSize && l.q.idle() && l.spliceAvailable()
	}
	l.applyToxics(b, now)
	if !l.deliver(b) {
		return true
	}
	return b.end != endNone
}

func (b *batch) size() int {
	n := 0
	for _, p := range b.pieces {
		n += len(p.data)
	}
	return n
}

// read takes one chunk from src, with a pooled buffer taken only once the
// socket is readable.
func (l *link) read() (*batch, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	err := l.srcRaw.Read(func(fd uintptr) bool {
		bp = bufPool.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), (*bp)[:l.readMax])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			bufPool.Put(bp)
			bp = nil
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil || n <= 0 {
		bufPool.Put(bp)
		if rerr != nil {
			return nil, rerr
		}
		return nil, io.EOF
	}
	return &batch{buf: bp, pieces: []piece{{data: (*bp)[:n]}}}, nil
}

// deliver writes the batch now if nothing waits before it and it is due,
// else queues it. It returns false if the connection closed.
func (l *link) deliver(b *batch) bool {
	if l.q.tryInline(b) {
		return l.write(b, nil)
	}
	return l.q.push(l, b)
}

// write writes a batch's pieces at their due times and carries out its end.
// With a non-nil queue it waits for due times (the writer goroutine).
func (l *link) write(b *batch, q *queue) bool {
	defer b.release()
	for _, p := range b.pieces {
		if q != nil && !q.waitDue(l.c, b, p.due) {
			return false
		}
		if len(p.data) == 0 {
			continue
		}
		n, err := l.dst.Write(p.data)
		l.sent.Add(int64(n))
		if err != nil {
			l.c.close()
			return false
		}
	}
	if b.end == endNone {
		return true
	}
	if q != nil && !q.waitDue(l.c, b, b.endDue) {
		return false
	}
	switch b.end {
	case endEOF:
		l.endStream()
	case endClose:
		l.c.close()
	case endReset:
		l.c.reset()
	}
	return true
}

// queue holds batches waiting for their due time, in order, and runs the
// writer goroutine while it is not empty.
type queue struct {
	mu      sync.Mutex
	items   []*batch
	mem     int  // the sum of the items' mem
	running bool // a writer goroutine is draining items
	space   chan struct{}
	flushCh chan struct{}
}

func (q *queue) init() {
	q.space = make(chan struct{}, 1)
	q.flushCh = make(chan struct{}, 1)
}

func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) == 0 && !q.running
}

func (q *queue) tryInline(b *batch) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) == 0 && !q.running && !b.lastDue().After(time.Now().Add(inlineSlack))
}

// compact moves a batch that uses little of its pooled buffer into memory
// of its own size, so that what waits in a queue holds no more than it
// needs (a 64-byte message must not hold a whole chunk for a minute).
func (b *batch) compact() {
	n := b.size()
	if b.buf == nil || n >= chunkSize/4 {
		return
	}
	own := make([]byte, 0, n)
	for i, p := range b.pieces {
		own = append(own, p.data...)
		b.pieces[i].data = own[len(own)-len(p.data):]
	}
	bufPool.Put(b.buf)
	b.buf = nil
}

// push appends b, for the writer goroutine to write; waitRoom made room
// for it before it was read. It returns false if the connection closed.
func (q *queue) push(l *link, b *batch) bool {
	b.compact()
	b.mem = b.memory()
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.c.isClosed() {
		b.release()
		return false
	}
	q.items = append(q.items, b)
	q.mem += b.mem
	if !q.running {
		q.running = true
		l.c.wg.Add(1)
		go q.drain(l)
	}
	return true
}

// waitRoom blocks, before a read, until the queue has room for all that
// one read can become (maxBatchMem, or maxSlicedMem), so that the queue
// and the batch in hand stay within queueLimit; false if the connection
// closed meanwhile.
func (l *link) waitRoom() bool {
	q := &l.q
	q.mu.Lock()
	room := maxBatchMem
	if l.readMax == slicedRead {
		room = maxSlicedMem
	}
	for q.mem > queueLimit-room {
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-l.wake:
			// A change of toxics may release what is held; look again.
			if ch := l.pending.Load(); ch != nil {
				l.adopt()
			}
		case <-l.c.done:
			return false
		}
		q.mu.Lock()
	}
	q.mu.Unlock()
	return true
}

// drain is the writer goroutine.
func (q *queue) drain(l *link) {
	defer l.c.wg.Done()
	defer func() { l.c.p.survive(recover(), l.c) }()
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.running = false
			q.mu.Unlock()
			q.signal()
			return
		}
		b := q.items[0]
		q.mu.Unlock()

		n := b.mem
		end := b.end
		ok := l.write(b, q)

		q.mu.Lock()
		q.items[0] = nil
		q.items = q.items[1:]
		if len(q.items) == 0 {
			q.items = nil
		}
		q.mem -= n
		if !ok || end == endClose || end == endReset {
			q.running = false
			for _, b := range q.items {
				b.release()
			}
			q.items, q.mem = nil, 0
			q.mu.Unlock()
			q.signal()
			return
		}
		q.mu.Unlock()
		q.signal()
	}
}

func (q *queue) signal() {
	select {
	case q.space <- struct{}{}:
	default:
	}
}

// waitQueue blocks until the writer goroutine has written everything
// queued, or the connection closed. Changes of toxics are still adopted
// meanwhile: removing a slow_close lets the end of stream go at once.
func (l *link) waitQueue() {
	for !l.q.idle() {
		select {
		case <-l.q.space:
		case <-l.wake:
			l.adopt()
		case <-l.c.done:
			return
		}
	}
}

// preciseSlots bounds the threads that sleep in the kernel for the last
// stretch before a due time (see waitDue).
var preciseSlots = make(chan struct{}, 4)

// preciseWindow is the stretch before a due time slept in the kernel: the
// runtime's timers wake from the network poller, which sleeps in whole
// milliseconds, so a timer alone is up to a millisecond late.
const preciseWindow = 2 * time.Millisecond

// waitDue blocks until due, a flush, or the connection's end.
func (q *queue) waitDue(c *conn, b *batch, due time.Time) bool {
	for !b.flushed.Load() {
		d := time.Until(due)
		if d <= 0 {
			return true
		}
		if d <= preciseWindow {
			select {
			case preciseSlots <- struct{}{}:
				sleepUntil(due)
				<-preciseSlots
				return true
			default: // all slots busy: a timer will do
			}
		} else {
			d -= preciseWindow
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-q.flushCh:
			t.Stop()
		case <-c.done:
			t.Stop()
			return false
		}
	}
	return true
}

// sleepUntil sleeps in the kernel, holding the thread, until t, with the
// thread's timer slack (by which the kernel may wake it late to merge
// wake-ups: 50 µs by default) at its finest meanwhile.
func sleepUntil(t time.Time) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer fineTimerSlack()()
	for d := time.Until(t); d > 0; d = time.Until(t) {
		ts := syscall.NsecToTimespec(int64(d))
		_ = syscall.Nanosleep(&ts, nil)
	}
}

// flush makes everything queued due now.
func (q *queue) flush() {
	q.mu.Lock()
	for _, b := range q.items {
		b.flushed.Store(true)
	}
	q.mu.Unlock()
	select {
	case q.flushCh <- struct{}{}:
	default:
	}
}
