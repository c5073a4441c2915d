package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors that callers branch on. The HTTP API maps them to status codes.
var (
	// ErrNotFound: no proxy or toxic of that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: a proxy or toxic of that name exists already.
	ErrExists = errors.New("already exists")
	// ErrInvalid: a value that cannot be used; the message says which.
	ErrInvalid = errors.New("invalid")
)

// invalidError is an ErrInvalid whose message is only its own text, which
// the API passes on as Toxiproxy words it.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

// DefaultDialTimeout bounds the dial to the upstream of each new connection.
const DefaultDialTimeout = 10 * time.Second

// Config describes one proxy.
type Config struct {
	// Name identifies the proxy in the API and in metrics.
	Name string
	// Listen is the address to listen on, "127.0.0.1:0" for a free port.
	Listen string
	// Upstream is the address each accepted connection is forwarded to,
	// dialled anew for every connection.
	Upstream string
	// Seed seeds the random draws (toxicity, jitter, slicer sizes);
	// zero means a seed from the clock.
	Seed int64
	// DialTimeout bounds the upstream dial; zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// Metrics, if not nil, counts bytes and connections.
	Metrics *Metrics
	// Logger, if not nil, is told of failed upstream dials (at most one
	// line a second per proxy); nil logs nothing.
	Logger *slog.Logger
	// Protocol "http" reads the HTTP of every connection from the start,
	// so that HTTP toxics added later act on connections already open;
	// without it, only connections opened while the proxy has an HTTP
	// toxic do. Empty is plain TCP.
	Protocol string
	// Listener, if not nil, opens the listener at every start instead of
	// listening on Listen (an intercept opens it inside a network
	// namespace); it must return a *net.TCPListener.
	Listener func() (net.Listener, error)
	// Dial, if not nil, opens the upstream connection of each accepted
	// client instead of dialling Upstream (an intercept dials the client's
	// original destination); ctx ends with the proxy's run and
	// DialTimeout. See intercept.go.
	Dial func(ctx context.Context, client *net.TCPConn) (*net.TCPConn, error)
}

// Proxy forwards TCP connections from Listen to Upstream, applying toxics.
// Its methods are safe for concurrent use. A Proxy that is not enabled
// keeps its toxics but has no listener and no connections.
type Proxy struct {
	name        string
	rand        *lockedRand
	dialTimeout time.Duration
	metrics     *proxyMetrics
	log         *slog.Logger
	lastLog     atomic.Int64 // unix ns of the last dial failure logged
	unlogged    atomic.Int64 // dial failures since then
	panics      atomic.Int64 // recovered panics of connection goroutines

	mu       sync.Mutex
	listen   string
	upstream string
	run      *listenerRun  // nil while stopped
	toxics   []*toxicEntry // insertion order
	chains   [2]*chain     // by Stream
	conns    map[*conn]struct{}
	serial   uint64
	// protocol "http" sends every connection through the HTTP stage.
	protocol   string
	httpCounts map[uint64]*atomic.Int64 // by toxic serial
	nonHTTP    atomic.Int64
	// listenFn and dialFn are Config.Listener and Config.Dial.
	listenFn func() (net.Listener, error)
	dialFn   func(ctx context.Context, client *net.TCPConn) (*net.TCPConn, error)
}

// toxicEntry is one toxic as the proxy holds it; it is never modified, an
// update makes a new entry with the same serial.
type toxicEntry struct {
	Toxic
	serial uint64
	// gone is closed when the entry stops applying (the toxic is removed
	// or updated): what it holds back, such as a request an http_latency
	// delays, is let go.
	gone chan struct{}
}

func newToxicEntry(t Toxic, serial uint64) *toxicEntry {
	return &toxicEntry{Toxic: t, serial: serial, gone: make(chan struct{})}
}

// chain is the immutable list of a stream's toxics, in order.
type chain struct {
	toxics []*toxicEntry
}

// New returns a stopped proxy. Start or Serve runs it.
func New(cfg Config) *Proxy {
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	p := &Proxy{
		name:        cfg.Name,
		listen:      cfg.Listen,
		upstream:    cfg.Upstream,
		rand:        newLockedRand(seed),
		dialTimeout: cfg.DialTimeout,
		log:         cfg.Logger,
		conns:       map[*conn]struct{}{},
		protocol:    cfg.Protocol,
		listenFn:    cfg.Listener,
		dialFn:      cfg.Dial,
	}
	if p.dialTimeout <= 0 {
		p.dialTimeout = DefaultDialTimeout
	}
	p.chains[Upstream], p.chains[Downstream] = &chain{}, &chain{}
	p.metrics = cfg.Metrics.forProxy(p)
	return p
}

// Name returns the proxy's name.
func (p *Proxy) Name() string { return p.name }

// Listen returns the listen address: once started, the address actually
// bound ("127.0.0.1:0" becomes "127.0.0.1:PORT").
func (p *Proxy) Listen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listen
}

// Upstream returns the upstream address.
func (p *Proxy) Upstream() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream
}

// Enabled reports whether the proxy is listening.
func (p *Proxy) Enabled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run != nil
}

// Start listens and accepts connections in the background until Stop. It
// returns the listen error unchanged (e.g. "bind: address already in use").
// Starting a running proxy does nothing.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

// listenerRun is one period of listening: the listener, the goroutines it
// started, and the cancel of their dials.
type listenerRun struct {
	ln     *net.TCPListener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// wait blocks until the run's goroutines have exited; nil waits for nothing.
func (r *listenerRun) wait() {
	if r != nil {
		r.wg.Wait()
	}
}

func (p *Proxy) startLocked() error {
	if p.run != nil {
		return nil
	}
	ln, err := p.openListener()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &listenerRun{ln: ln, cancel: cancel}
	p.run = r
	p.listen = ln.Addr().String()
	r.wg.Add(1)
	go p.accept(ctx, r)
	return nil
}

// Stop closes the listener and every connection, and returns once all of
// the proxy's goroutines have exited. Stopping a stopped proxy does nothing.
func (p *Proxy) Stop() {
	p.mu.Lock()
	r := p.stopLocked()
	p.mu.Unlock()
	r.wait()
}

// stopLocked closes the listener and the connections and returns the run
// for the caller to wait for once it has unlocked.
func (p *Proxy) stopLocked() *listenerRun {
	r := p.run
	if r == nil {
		return nil
	}
	p.run = nil
	r.cancel()
	_ = r.ln.Close()
	for c := range p.conns {
		c.close()
	}
	return r
}

// Serve runs the proxy until ctx is done, then stops it. It returns the
// listen error, if any, else nil once stopped.
func (p *Proxy) Serve(ctx context.Context) error {
	if err := p.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	p.Stop()
	return nil
}

// Update changes the proxy as Toxiproxy's API does: if the listen address
// (compared once resolved) or the upstream changes, the proxy stops,
// closing its connections, and takes the new addresses; then it starts or
// stops to match enabled. A listen error leaves it stopped with the new
// addresses stored.
func (p *Proxy) Update(listen, upstream string, enabled bool) error {
	addr, err := net.ResolveTCPAddr("tcp", listen)
	if err != nil {
		return err
	}
	p.mu.Lock()
	var old *listenerRun
	if addr.String() != p.listen || upstream != p.upstream {
		old = p.stopLocked()
		p.listen, p.upstream = listen, upstream
	}
	switch {
	case enabled:
		err = p.startLocked()
	case p.run != nil:
		old = p.stopLocked()
	}
	p.mu.Unlock()
	old.wait()
	return err
}

func (p *Proxy) accept(ctx context.Context, r *listenerRun) {
	defer r.wg.Done()
	for !p.acceptLoop(ctx, r) { // a panic was recovered: accept on
	}
}

// acceptLoop accepts until the listener closes and reports true then; it
// reports false after a recovered panic.
func (p *Proxy) acceptLoop(ctx context.Context, r *listenerRun) (done bool) {
	defer func() { p.survive(recover(), nil) }()
	for {
		client, err := r.ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return true
			}
			// Out of file descriptors and the like: back off, don't spin.
			select {
			case <-ctx.Done():
				return true
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		r.wg.Add(1)
		go p.handle(ctx, r, client)
	}
}

// survive handles what recover returned in a goroutine of the data path: a
// panic closes that connection (c, if not nil), which lets go of whatever
// its toxics held, and is counted and logged; the process and the other
// connections go on. Deferred as
//
//	defer func() { p.survive(recover(), c) }()
func (p *Proxy) survive(v any, c *conn) {
	if v == nil {
		return
	}
	if p.log != nil {
		p.log.Error("a connection's goroutine panicked: the connection is closed, the proxy goes on",
			"proxy", p.name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	}
	p.metrics.panicked()
	p.panics.Add(1) // after the log, before the close: whoever sees either sees the count
	if c != nil {
		c.close()
	}
}

// async runs f in a goroutine of c and delivers its result on the channel
// returned; a panic in f closes c and delivers errPanic. The connection
// ends once f has returned. Only a goroutine of c that is itself counted
// in c.wg calls it.
func (c *conn) async(f func() error) <-chan error {
	ch := make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := errPanic
		defer func() {
			c.p.survive(recover(), c)
			ch <- err
		}()
		err = f()
	}()
	return ch
}

var errPanic = errors.New("panic (recovered; the connection is closed)")

// Panics returns how many panics in the proxy's connections were
// recovered (each closed its connection); a bug, which the log describes.
func (p *Proxy) Panics() int64 { return p.panics.Load() }

// handle dials the upstream for one client and runs the connection.
func (p *Proxy) handle(ctx context.Context, r *listenerRun, client *net.TCPConn) {
	defer r.wg.Done()
	var c *conn
	registered := false
	defer func() {
		if v := recover(); v != nil {
			_ = client.Close()
			p.survive(v, c)
		}
		if registered {
			c.wg.Wait()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			p.metrics.connClosed()
		}
	}()
	p.mu.Lock()
	upstream := p.upstream
	p.mu.Unlock()
	sc, err := p.dialUpstream(ctx, client, upstream)
	if err != nil {
		// The client sees the connection closed, as with Toxiproxy.
		_ = client.Close()
		p.metrics.dialFailed()
		p.logDialFailure(upstream, err)
		return
	}
	// An HTTP-mode connection: the HTTP stage talks to the real client and
	// to one end of a loopback pair; the byte links run from the other end.
	var front net.Conn
	var inner *net.TCPConn
	if p.httpMode() {
		var outer *net.TCPConn
		if outer, inner, err = loopbackPair(); err != nil {
			_ = client.Close()
			_ = sc.Close()
			return
		}
		front, client = client, outer
	}
	c = newConn(p, client, sc)
	c.front = front
	if !p.register(c, r) {
		c.close()
		if inner != nil {
			_ = inner.Close()
		}
		return
	}
	registered = true
	if inner != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() { p.survive(recover(), c) }()
			p.serveHTTP(c, front, inner)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.links[Downstream].run()
	}()
	c.links[Upstream].run()
}

func (p *Proxy) logDialFailure(upstream string, err error) {
	if p.log == nil {
		return
	}
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	if now-last < int64(time.Second) || !p.lastLog.CompareAndSwap(last, now) {
		p.unlogged.Add(1)
		return
	}
	p.log.Warn("upstream dial failed: client connection closed", "proxy", p.name, "upstream", upstream,
		"err", err, "more_failures_not_logged", p.unlogged.Swap(0))
}

// register adds c to the live connections with the current toxics; it
// reports false if the proxy stopped meanwhile.
func (p *Proxy) register(c *conn, r *listenerRun) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != r {
		return false
	}
	// The links start with the current toxics, before any later change
	// can be published to them.
	for s := range c.links {
		l := &c.links[s]
		l.adoptChain(p.chains[s])
		_ = l.src.SetReadDeadline(l.closeAt)
	}
	p.conns[c] = struct{}{}
	p.metrics.connOpened()
	return true
}

// Toxics returns the proxy's toxics: upstream ones first, then downstream,
// each in the order they were added.
func (p *Proxy) Toxics() []Toxic {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Toxic, 0, len(p.toxics))
	for _, s := range []Stream{Upstream, Downstream} {
		for _, e := range p.toxics {
			if e.Stream == s {
				out = append(out, e.Toxic)
			}
		}
	}
	return out
}

// Toxic returns the toxic of that name, or ErrNotFound.
func (p *Proxy) Toxic(name string) (Toxic, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.findLocked(name)
	if e == nil {
		return Toxic{}, fmt.Errorf("toxic %q: %w", name, ErrNotFound)
	}
	return e.Toxic, nil
}

func (p *Proxy) findLocked(name string) *toxicEntry {
	for _, e := range p.toxics {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// AddToxic adds a toxic at the end of its stream's chain and returns it
// with its defaults filled in. Live connections apply it to every byte
// they read after the call.
func (p *Proxy) AddToxic(t Toxic) (Toxic, error) {
	t, err := t.normalize()
	if err != nil {
		return t, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.findLocked(t.Name) != nil {
		return t, fmt.Errorf("toxic %q: %w", t.Name, ErrExists)
	}
	p.serial++
	p.toxics = append(p.toxics, newToxicEntry(t, p.serial))
	p.rebuildLocked()
	return t, nil
}

// UpdateToxic replaces the toxicity and effect of the toxic named t.Name;
// its stream and place in the chain stay. A nil Effect keeps the current
// one; the effect's type must not change.
func (p *Proxy) UpdateToxic(t Toxic) (Toxic, error) {
	return p.modifyToxic(t.Name, func(old Toxic) (Toxic, error) {
		if t.Effect == nil {
			t.Effect = old.Effect
		}
		if t.Effect.Type() != old.Effect.Type() {
			return t, invalidf("toxic %q is of type %s, not %s", t.Name, old.Effect.Type(), t.Effect.Type())
		}
		return t, nil
	})
}

// modifyToxic replaces a toxic by what change makes of it, atomically.
func (p *Proxy) modifyToxic(name string, change func(Toxic) (Toxic, error)) (Toxic, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.findLocked(name)
	if old == nil {
		return Toxic{}, fmt.Errorf("toxic %q: %w", name, ErrNotFound)
	}
	t, err := change(old.Toxic)
	if err != nil {
		return t, err
	}
	t.Name, t.Stream, t.streamName = old.Name, old.Stream, old.streamName
	if t, err = t.normalize(); err != nil {
		return t, err
	}
	for i, e := range p.toxics {
		if e == old {
			p.toxics[i] = newToxicEntry(t, old.serial)
			close(old.gone)
		}
	}
	p.rebuildLocked()
	return t, nil
}

// RemoveToxic removes a toxic. What it was holding back on live
// connections is let go at once (bytes, and requests or responses an
// http_latency delays); removing a timeout closes the connections it was
// holding.
func (p *Proxy) RemoveToxic(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, e := range p.toxics {
		if e.Name == name {
			p.toxics = append(p.toxics[:i:i], p.toxics[i+1:]...)
			close(e.gone)
			p.rebuildLocked()
			return nil
		}
	}
	return fmt.Errorf("toxic %q: %w", name, ErrNotFound)
}

// RemoveAllToxics removes every toxic, letting go at once of what they
// held, as RemoveToxic does.
func (p *Proxy) RemoveAllToxics() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.toxics) == 0 {
		return
	}
	for _, e := range p.toxics {
		close(e.gone)
	}
	p.toxics = nil
	p.rebuildLocked()
}

// rebuildLocked makes new chains from p.toxics and publishes the ones that
// changed to every live connection.
func (p *Proxy) rebuildLocked() {
	var next [2]*chain
	next[Upstream], next[Downstream] = &chain{}, &chain{}
	for _, e := range p.toxics {
		if !isHTTP(e.Effect) { // the HTTP stage reads those
			next[e.Stream].toxics = append(next[e.Stream].toxics, e)
		}
	}
	for s := range next {
		if sameChain(next[s], p.chains[s]) {
			continue
		}
		p.chains[s] = next[s]
		for c := range p.conns {
			c.links[s].publish(next[s])
		}
	}
	var n [2]int
	for _, e := range p.toxics {
		n[e.Stream]++
	}
	p.metrics.setToxics(n[Upstream], n[Downstream])
}

func sameChain(a, b *chain) bool {
	if len(a.toxics) != len(b.toxics) {
		return false
	}
	for i := range a.toxics {
		if a.toxics[i] != b.toxics[i] {
			return false
		}
	}
	return true
}

// NumConns returns the number of live connections.
func (p *Proxy) NumConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// conn is one proxied connection: client ⇄ proxy ⇄ server.
type conn struct {
	p              *Proxy
	client, server *net.TCPConn
	front          net.Conn // the real client behind the HTTP stage, or nil
	links          [2]link  // by Stream
	done           chan struct{}
	closeOnce      sync.Once
	ended          atomic.Int32
	wg             sync.WaitGroup // the downstream reader and writer goroutines
}

func newConn(p *Proxy, client, server *net.TCPConn) *conn {
	c := &conn{p: p, client: client, server: server, done: make(chan struct{})}
	c.links[Upstream].init(c, Upstream, client, server)
	c.links[Downstream].init(c, Downstream, server, client)
	return c
}

func (l *link) init(c *conn, s Stream, src, dst *net.TCPConn) {
	l.c, l.stream, l.src, l.dst = c, s, src, dst
	l.srcRaw, _ = src.SyscallConn() // never fails for an open *net.TCPConn
	l.wake = make(chan struct{}, 1)
	l.readMax = chunkSize
	l.q.init()
	l.received, l.sent = c.p.metrics.counters(s)
}

func (c *conn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// close closes both sockets; every goroutine of the connection then ends.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		discardInput(c.client)
		discardInput(c.server)
		_ = c.client.Close()
		_ = c.server.Close()
		if c.front != nil {
			_ = c.front.Close()
		}
	})
}

// discardInput reads and drops what a socket has received and nobody read,
// so that closing it sends a FIN, not the RST that unread data causes.
func discardInput(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		var buf [4096]byte
		for range 64 {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				return
			}
		}
	})
}

// reset closes both sockets with an RST.
func (c *conn) reset() {
	_ = c.client.SetLinger(0)
	_ = c.server.SetLinger(0)
	if tc, ok := c.front.(*net.TCPConn); ok { // the real client, in HTTP mode
		_ = tc.SetLinger(0)
	}
	c.close()
}

// linkDone closes the connection once both streams have ended. In HTTP
// mode the real client's socket is the HTTP stage's to close: it may still
// be writing the end of a response to it.
func (c *conn) linkDone(*link) {
	if c.ended.Add(1) != 2 {
		return
	}
	if c.front == nil {
		c.close()
		return
	}
	_ = c.client.Close()
	_ = c.server.Close()
}
