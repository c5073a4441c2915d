package load

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// loops send a run's requests on event loops of the engine's own, one for
// every two cores (at least one), when every request is plain HTTP to an
// IP address (no TLS, no name to resolve). Each loop owns its connections
// and waits for all of them in one epoll_wait: a request costs a write and
// a read, as it does wrk, and no goroutine parks and wakes for it.
// Goroutine workers, one a request in flight, cost the Go scheduler a
// park and a wake a request, and on a machine where the server shares the
// cores that was a tenth or more of the rate (bench/load.sh measures it).
// A loop at full speed keeps a core busy; half the cores leave the rest to
// what it drives, which in a chaos experiment often runs beside it: on two
// cores one loop took a fifth less CPU per request than two, and one loop
// sends about a hundred thousand requests a second.
//
// The loops keep the engine's semantics: request n is taken in order and
// sent when due, a slot (a worker's place) at a time; the controller adds
// and retires slots as it does workers; every request gets the timeout,
// dial, write and read together; a kept-alive connection the server
// closed is replaced and the request sent again once; answers are read as
// readResponse reads them, and one that is not simple (chunked, 1xx, a
// long head) is handed to readResponse on a goroutine of its own.
type loops struct {
	all   []*loop
	given []int // slots given to each loop and not retired
}

// newLoops readies loops for e's requests, or returns nil when a request
// is not one they send.
func newLoops(e *engine) *loops {
	wires := make([]*kind, len(e.doers))
	var addrs []unix.Sockaddr
	index := map[netip.AddrPort]int{}
	at := make([]int, len(e.doers))
	for i, d := range e.doers {
		h, ok := d.(httpDoer)
		if !ok || h.k.tls != nil {
			return nil
		}
		ap, err := netip.ParseAddrPort(h.k.addr)
		if err != nil || ap.Addr().Zone() != "" {
			return nil
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		j, seen := index[ap]
		if !seen {
			j = len(addrs)
			index[ap] = j
			if ap.Addr().Is4() {
				addrs = append(addrs, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
			} else {
				addrs = append(addrs, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()})
			}
		}
		wires[i], at[i] = h.k, j
	}
	ls := &loops{}
	for range min(max(runtime.GOMAXPROCS(0)/2, 1), e.max) {
		l, err := newLoop(e, wires, addrs, at)
		if err != nil {
			ls.close()
			return nil
		}
		ls.all = append(ls.all, l)
	}
	ls.given = make([]int, len(ls.all))
	return ls
}

// start starts the loops; each is one of e.workers.
func (ls *loops) start() {
	for _, l := range ls.all {
		l.e.workers.Add(1)
		go l.run()
	}
}

// add gives n slots to the loops, each to the loop with fewest, so that
// they stay even (and so their connections).
func (ls *loops) add(n int) {
	per := make([]int, len(ls.all))
	for range n {
		i := 0
		for j := range ls.given {
			if ls.given[j] < ls.given[i] {
				i = j
			}
		}
		ls.given[i]++
		per[i]++
	}
	for i, l := range ls.all {
		if per[i] > 0 {
			l.post(func(m *inbox) { m.add += per[i] })
		}
	}
}

// retire takes n slots back, each from the loop with most, after the
// request it is on.
func (ls *loops) retire(n int) {
	per := make([]int, len(ls.all))
	for range n {
		i := 0
		for j := range ls.given {
			if ls.given[j] > ls.given[i] {
				i = j
			}
		}
		ls.given[i]--
		per[i]++
	}
	for i, l := range ls.all {
		if per[i] > 0 {
			l.post(func(m *inbox) { m.retire += per[i] })
		}
	}
}

// stop tells the loops to send no more: they end once the requests in
// flight have.
func (ls *loops) stop() {
	for _, l := range ls.all {
		l.post(func(m *inbox) { m.stop = true })
	}
}

// close closes loops that never ran.
func (ls *loops) close() {
	for _, l := range ls.all {
		l.closeFDs()
	}
}

// loop is one event loop: its goroutine alone touches what is below mu's
// fields.
type loop struct {
	e     *engine
	wires []*kind         // by request
	addrs []unix.Sockaddr // by address
	at    []int           // the address of each request
	ep    int             // epoll
	wake  int             // eventfd: the inbox has mail
	timer int             // timerfd: a request is due or a deadline passed

	mu    sync.Mutex
	box   inbox
	ended bool // the loop has closed its descriptors

	slots    int        // slots the loop has
	most     int        // the most it has had: as many idle connections are kept, for the next probe
	busy     int        // slots with a request sent and not finished (away ones too)
	again    []inFlight // long answers to read on, after the others' turn
	ready    []*slot    // slots free to take a request
	waiting  []*slot    // slots with a request taken and not yet due, by due time
	flying   []inFlight // requests sent, by deadline; finished ones are skipped
	idle     [][]*lconn // kept-alive connections, by address
	nidle    int
	byFD     []*lconn // connections by file descriptor
	serial   int32
	armed    time.Time // when the timer is set to go off; zero: not set
	retiring int       // slots to take away as they come free
	stopping bool
	away     sync.WaitGroup // answers handed to readResponse
}

// inbox is what other goroutines tell a loop.
type inbox struct {
	add    int        // slots to add
	retire int        // slots to take away, as they come free
	back   []handBack // slots whose answer readResponse has read
	stop   bool
}

// slot is a worker's place: the request it sends, if any.
type slot struct {
	n        uint64
	i        int // the Request
	due      time.Time
	sent     time.Time
	deadline time.Time
	c        *lconn
	retried  bool
	wrote    int // bytes of the request written
	gen      uint32
	state    uint8
}

const (
	slotFree = iota
	slotConnecting
	slotWriting
	slotReading
	slotAway
)

// inFlight is a request sent, for its deadline.
type inFlight struct {
	s   *slot
	gen uint32
}

// lconn is a connection of a loop.
type lconn struct {
	fd     int
	serial int32
	addr   int
	reused bool   // it carried an answer before
	unread bool   // bytes came while the request was going out
	s      *slot  // the slot using it; nil when idle
	a      answer // what came in
}

func newLoop(e *engine, wires []*kind, addrs []unix.Sockaddr, at []int) (*loop, error) {
	l := &loop{e: e, wires: wires, at: at, ep: -1, wake: -1, timer: -1, idle: make([][]*lconn, len(addrs))}
	for _, sa := range addrs { // its own: Connect writes in them
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			l.addrs = append(l.addrs, &unix.SockaddrInet4{Port: sa.Port, Addr: sa.Addr})
		case *unix.SockaddrInet6:
			l.addrs = append(l.addrs, &unix.SockaddrInet6{Port: sa.Port, Addr: sa.Addr})
		}
	}
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.closeFDs()
		return nil, err
	}
	if l.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		l.closeFDs()
		return nil, err
	}
	for _, fd := range []int{l.wake, l.timer} {
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd), Pad: -1}); err != nil {
			l.closeFDs()
			return nil, err
		}
	}
	return l, nil
}

func (l *loop) closeFDs() {
	for _, fd := range []int{l.ep, l.wake, l.timer} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	l.ep, l.wake, l.timer = -1, -1, -1
}

// post changes the inbox and wakes the loop; once the loop has ended it
// does nothing (and so never writes to a descriptor closed and reused).
func (l *loop) post(f func(*inbox)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	f(&l.box)
	one := [8]byte{1}
	_, _ = unix.Write(l.wake, one[:]) // fails only when the counter is full: awake already
}

func (l *loop) run() {
	defer l.e.workers.Done()
	defer l.close()
	defer l.e.catch()
	events := make([]unix.EpollEvent, 256)
	for {
		l.readAgain()
		l.serve()
		if l.stopping && l.busy == 0 {
			break
		}
		l.arm()
		wait := -1
		if len(l.ready) > 0 || len(l.again) > 0 {
			wait = 0
		}
		k, err := unix.EpollWait(l.ep, events, wait)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			l.broken(os.NewSyscallError("epoll_wait", err))
			break
		}
		for _, ev := range events[:k] {
			switch fd := int(ev.Fd); {
			case fd == l.wake:
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				l.readInbox()
			case fd == l.timer:
				var b [8]byte
				_, _ = unix.Read(l.timer, b[:])
				l.armed = time.Time{}
			default:
				if fd < len(l.byFD) {
					if c := l.byFD[fd]; c != nil && c.serial == ev.Pad {
						l.event(c, ev.Events)
					}
				}
			}
		}
		l.timers(time.Now())
	}
}

// close closes the loop once it ends (or panics): its connections, once
// the answers handed to readResponse are read, and its descriptors.
func (l *loop) close() {
	l.away.Wait()
	l.readInbox() // the slots handed back: nothing more to do with them
	for _, c := range l.byFD {
		if c != nil {
			_ = unix.Close(c.fd)
		}
	}
	l.mu.Lock()
	l.ended = true
	l.closeFDs()
	l.mu.Unlock()
}

// broken ends every request in flight with err: the loop cannot wait any
// more (which only a bug in it could cause).
func (l *loop) broken(err error) {
	for _, f := range l.flying {
		if s := f.s; s.gen == f.gen && s.state != slotFree && s.state != slotAway {
			l.fail(s, err)
		}
	}
	l.stopping = true
}

func (l *loop) readInbox() {
	l.mu.Lock()
	m := l.box
	l.box = inbox{}
	l.mu.Unlock()
	for range m.add {
		l.slots++
		l.ready = append(l.ready, &slot{})
	}
	l.most = max(l.most, l.slots)
	l.retiring += m.retire
	for _, b := range m.back {
		l.busy--
		b.s.state = slotFree
		l.ready = append(l.ready, b.s)
		if b.fd >= 0 {
			l.adopt(b)
		}
	}
	if m.stop {
		l.stopping, l.waiting = true, nil
	}
}

// serve gives the free slots their next request, as many as were free
// when it began: a slot whose request failed at once comes back, and
// waits for the next round, so that the loop still reads its inbox.
func (l *loop) serve() {
	ready := l.ready
	l.ready = nil
	for i, s := range ready {
		if l.over() {
			continue
		}
		if l.retiring > 0 {
			l.retiring--
			l.slots--
			continue
		}
		n := l.e.next.Add(1) - 1
		s.n, s.due = n, l.e.due(n)
		if now := time.Now(); s.due.After(now) {
			l.waiting = append(l.waiting, s)
		} else {
			l.start(s, now)
		}
		ready[i] = nil
	}
}

// over reports whether the run is over (its context done, or the
// engine said so): then no request is sent any more, and those taken and
// not yet due never will be, as a worker waiting for one returns.
func (l *loop) over() bool {
	if !l.stopping {
		select {
		case <-l.e.done:
			l.stopping, l.waiting = true, nil
		default:
		}
	}
	return l.stopping
}

// timers sends the requests due by now and ends those past their
// deadline.
func (l *loop) timers(now time.Time) {
	if !l.over() {
		k := 0
		for k < len(l.waiting) && !l.waiting[k].due.After(now) {
			l.start(l.waiting[k], now)
			k++
		}
		l.waiting = l.waiting[:copy(l.waiting, l.waiting[k:])]
	}
	k := 0
	for ; k < len(l.flying); k++ {
		f := l.flying[k]
		if f.s.gen != f.gen || f.s.state == slotFree || f.s.state == slotAway {
			continue // finished, or readResponse has its deadline
		}
		if f.s.deadline.After(now) {
			break
		}
		l.fail(f.s, os.ErrDeadlineExceeded)
	}
	l.flying = l.flying[:copy(l.flying, l.flying[k:])]
}

// arm sets the timer for the next due request or deadline, unless it goes
// off before that anyway (then timers finds nothing, and it is set again).
func (l *loop) arm() {
	var at time.Time
	if len(l.waiting) > 0 {
		at = l.waiting[0].due
	}
	for _, f := range l.flying {
		if f.s.gen == f.gen && f.s.state != slotFree && f.s.state != slotAway {
			if at.IsZero() || f.s.deadline.Before(at) {
				at = f.s.deadline
			}
			break
		}
	}
	if at.IsZero() || (!l.armed.IsZero() && !at.Before(l.armed)) {
		return
	}
	d := max(time.Until(at), time.Microsecond)
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(l.timer, 0, &spec, nil); err == nil {
		l.armed = at
	}
}

// start sends s's request, taken and due; sent is now.
func (l *loop) start(s *slot, sent time.Time) {
	e := l.e
	s.i = e.pick.pick(s.n)
	if e.flight != nil {
		e.flight.start(s.n, Pending{Request: e.requests[s.i].Name, Intended: s.due})
	}
	s.sent, s.deadline, s.retried = sent, sent.Add(e.timeout), false
	s.gen++
	l.busy++
	l.flying = append(l.flying, inFlight{s: s, gen: s.gen})
	addr := l.at[s.i]
	if idle := l.idle[addr]; len(idle) > 0 {
		c := idle[len(idle)-1]
		l.idle[addr] = idle[:len(idle)-1]
		l.nidle--
		l.send(s, c)
		return
	}
	l.dial(s)
}

// send writes s's request on c.
func (l *loop) send(s *slot, c *lconn) {
	s.c, c.s = c, s
	s.wrote, s.state = 0, slotWriting
	c.a.start(l.wires[s.i].method == http.MethodHead)
	l.write(s)
}

func (l *loop) dial(s *slot) {
	sa := l.addrs[l.at[s.i]]
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.fail(s, l.dialError(s, os.NewSyscallError("socket", err)))
		return
	}
	// As net.Dialer{KeepAlive: 30 * time.Second} sets them.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 30)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		l.fail(s, l.dialError(s, os.NewSyscallError("connect", err)))
		return
	}
	c, err := l.register(fd, l.at[s.i])
	if err != nil {
		_ = unix.Close(fd)
		l.fail(s, l.dialError(s, err))
		return
	}
	s.c, c.s = c, s
	s.wrote, s.state = 0, slotConnecting
	c.a.start(l.wires[s.i].method == http.MethodHead)
}

// register makes fd, a connection to address addr, one of the loop's.
func (l *loop) register(fd, addr int) (*lconn, error) {
	l.serial++
	c := &lconn{fd: fd, serial: l.serial, addr: addr, a: answer{buf: make([]byte, 0, answerBuffer)}}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: c.serial}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, nil)
	}
	l.byFD[fd] = c
	return c, nil
}

// event handles what epoll says of c.
func (l *loop) event(c *lconn, events uint32) {
	s := c.s
	if s == nil { // idle: the server closed it, or sent what nobody asked for
		l.readIdle(c)
		return
	}
	switch s.state {
	case slotConnecting:
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
			c.unread = true // an answer before the request: read once it is out
		}
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = unix.Errno(errno)
		}
		if err != nil {
			l.fail(s, l.dialError(s, os.NewSyscallError("connect", err)))
			return
		}
		s.state = slotWriting
		l.write(s)
	case slotWriting:
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
			c.unread = true // an early answer: read once the request is out
		}
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.write(s)
		}
	case slotReading:
		l.read(s)
	}
}

func (l *loop) write(s *slot) {
	c, wire := s.c, l.wires[s.i].wire
	for s.wrote < len(wire) {
		n, err := unix.Write(c.fd, wire[s.wrote:])
		switch {
		case err == unix.EAGAIN:
			return // epoll says when there is room
		case err == unix.EINTR:
			continue
		case err != nil:
			if l.retry(s) {
				return
			}
			l.fail(s, l.connError(s, "write", err))
			return
		}
		s.wrote += n
	}
	s.state = slotReading
	if len(c.a.buf) > 0 && l.consider(s, false) { // sent after the last answer: this one's start
		return
	}
	if c.unread { // epoll said so while the request went out, and will not again
		l.read(s)
	}
}

// read reads what came for s's request until the socket has no more.
func (l *loop) read(s *slot) {
	c := s.c
	c.unread = false
	for got := 0; ; {
		if got >= readTurn { // the others' turn, and the timers': back after them
			l.again = append(l.again, inFlight{s: s, gen: s.gen})
			return
		}
		if len(c.a.buf) == cap(c.a.buf) {
			l.consider(s, false) // a full buffer is no simple head: readResponse takes it
			return
		}
		had := len(c.a.buf)
		n, err := c.fill()
		got += max(n, 0)
		switch {
		case err == unix.EAGAIN:
			return
		case err != nil:
			if had == 0 && !c.a.inBody && err == unix.ECONNRESET && l.retry(s) {
				return
			}
			l.fail(s, l.connError(s, "read", err))
			return
		case n == 0:
			if had == 0 && !c.a.inBody {
				if l.retry(s) {
					return
				}
				l.fail(s, io.EOF)
				return
			}
			l.consider(s, true)
			return
		}
		if l.consider(s, false) {
			return
		}
	}
}

// readTurn is how much of a long answer read reads before the loop's
// other connections and timers have their turn (epoll says nothing more
// of bytes already come: the loop reads on, after them).
const readTurn = 256 << 10

// readAgain goes on reading the long answers that read left for a turn.
func (l *loop) readAgain() {
	again := l.again
	l.again = nil
	for _, f := range again {
		if f.s.gen == f.gen && f.s.state == slotReading {
			l.read(f.s)
		}
	}
}

// consider steps s's answer; it reports whether the answer is done with
// (read, failed or handed on).
func (l *loop) consider(s *slot, eof bool) bool {
	c := s.c
	switch c.a.step(eof) {
	case whole:
		code, keepAlive := c.a.code, c.a.keepAlive && !eof
		l.finish(s, code, nil)
		if keepAlive && l.nidle < l.most {
			c.s, c.reused = nil, true
			l.idle[c.addr] = append(l.idle[c.addr], c)
			l.nidle++
		} else {
			l.closeConn(c)
		}
		return true
	case cut:
		l.fail(s, errCut)
		return true
	case notSimple:
		l.handOff(s)
		return true
	}
	return false
}

// retry sends s's request again on a new connection if its kept-alive
// connection was closed by the server before any answer came; it reports
// whether it did.
func (l *loop) retry(s *slot) bool {
	c := s.c
	if !c.reused || s.retried {
		return false
	}
	l.closeConn(c)
	s.c, s.retried = nil, true
	l.dial(s)
	return true
}

// handOff gives s's answer, which is not simple, to readResponse on a
// goroutine of its own, with the connection; the slot comes back through
// the inbox once it is read.
func (l *loop) handOff(s *slot) {
	c := s.c
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, c.fd, nil)
	l.byFD[c.fd] = nil
	f := os.NewFile(uintptr(c.fd), "load")
	nc, err := net.FileConn(f) // a duplicate, in the Go poller
	_ = f.Close()
	c.fd = -1
	if err != nil {
		l.fail(s, err)
		return
	}
	held := bytes.NewReader(bytes.Clone(c.a.buf))
	head, addr := c.a.head, c.addr
	s.c, s.state = nil, slotAway
	e := l.e
	l.away.Add(1)
	go func() {
		defer l.away.Done()
		back := handBack{s: s, fd: -1, addr: addr}
		defer func() { l.post(func(m *inbox) { m.back = append(m.back, back) }) }() // even after a panic: the loop waits for it
		defer e.catch()
		_ = nc.SetDeadline(s.deadline)
		br := bufio.NewReaderSize(io.MultiReader(held, nc), 4096)
		code, keepAlive, err := readResponse(br, head)
		if err == nil && keepAlive {
			back.fd, back.left = keep(nc, br, held)
		}
		_ = nc.Close()
		e.record(s.n, s.i, s.due, s.sent, code, err)
	}()
}

// handBack is a slot readResponse is done with, and its connection if it
// may carry another request.
type handBack struct {
	s    *slot
	fd   int    // -1: closed
	addr int    // its address
	left []byte // bytes read past the answer, for the next one
}

// keep takes a kept-alive connection back from the Go poller for the loop:
// a duplicate of its descriptor, non-blocking, and the bytes read past the
// answer (a bufio.Reader would keep them for the next); fd is -1 when it
// cannot.
func keep(nc net.Conn, br *bufio.Reader, held *bytes.Reader) (fd int, left []byte) {
	fd = -1
	sc, ok := nc.(syscall.Conn)
	if !ok || br.Buffered()+held.Len() > answerBuffer {
		return -1, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, nil
	}
	_ = raw.Control(func(s uintptr) {
		if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			if unix.SetNonblock(d, true) == nil {
				fd = d
			} else {
				_ = unix.Close(d)
			}
		}
	})
	if fd < 0 {
		return -1, nil
	}
	left, _ = br.Peek(br.Buffered())
	rest := make([]byte, held.Len())
	_, _ = held.Read(rest)
	return fd, append(bytes.Clone(left), rest...)
}

// adopt takes back the connection of an answer readResponse read, as an
// idle one (or closes it, when the loop keeps enough).
func (l *loop) adopt(b handBack) {
	if l.stopping || l.nidle >= l.most {
		_ = unix.Close(b.fd)
		return
	}
	c, err := l.register(b.fd, b.addr)
	if err != nil {
		_ = unix.Close(b.fd)
		return
	}
	c.reused = true
	c.a.buf = append(c.a.buf, b.left...)
	l.idle[c.addr] = append(l.idle[c.addr], c)
	l.nidle++
}

// readIdle reads an idle connection that epoll says has news: bytes nobody
// asked for are kept, as a bufio.Reader would keep them, for the next
// answer to start with; a connection the server closed is closed.
func (l *loop) readIdle(c *lconn) {
	for len(c.a.buf) < cap(c.a.buf) {
		n, err := c.fill()
		switch {
		case err == unix.EAGAIN:
			return
		case err != nil || n == 0:
			l.dropIdle(c)
			return
		}
	}
}

// fill reads what has come on c into the room left in its buffer.
func (c *lconn) fill() (int, error) {
	for {
		n, err := unix.Read(c.fd, c.a.buf[len(c.a.buf):cap(c.a.buf)])
		if err == unix.EINTR {
			continue
		}
		if n > 0 {
			c.a.buf = c.a.buf[:len(c.a.buf)+n]
		}
		return n, err
	}
}

// dropIdle closes an idle connection.
func (l *loop) dropIdle(c *lconn) {
	idle := l.idle[c.addr]
	for i, d := range idle {
		if d == c {
			l.idle[c.addr] = append(idle[:i], idle[i+1:]...)
			l.nidle--
			break
		}
	}
	l.closeConn(c)
}

func (l *loop) closeConn(c *lconn) {
	if c.fd >= 0 {
		l.byFD[c.fd] = nil
		_ = unix.Close(c.fd) // which takes it out of the epoll set
		c.fd = -1
	}
	if c.s != nil {
		c.s.c = nil
		c.s = nil
	}
}

// fail ends s's request with err, and closes its connection.
func (l *loop) fail(s *slot, err error) {
	if s.c != nil {
		l.closeConn(s.c)
	}
	l.finish(s, 0, err)
}

// finish records s's result and frees the slot.
func (l *loop) finish(s *slot, code int, err error) {
	l.e.record(s.n, s.i, s.due, s.sent, code, err)
	if s.c != nil {
		s.c.s = nil
		s.c = nil
	}
	s.state = slotFree
	l.busy--
	l.ready = append(l.ready, s)
}

// dialError says as net.Dial would that s's connection failed.
func (l *loop) dialError(s *slot, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: l.netAddr(s), Err: err}
}

// connError says as a net.Conn would that op failed on s's connection.
func (l *loop) connError(s *slot, op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: l.netAddr(s), Err: os.NewSyscallError(op, err)}
}

func (l *loop) netAddr(s *slot) net.Addr {
	switch sa := l.addrs[l.at[s.i]].(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return nil
}
