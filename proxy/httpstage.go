package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxHTTPBody is the largest response body an http_body toxic reads
// whole; a larger one is answered with 502. Other bodies stream through.
const maxHTTPBody = 32 << 20

// httpMode reports whether new connections go through the HTTP stage: the
// proxy was created for HTTP, or has an HTTP toxic.
func (p *Proxy) httpMode() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.protocol == "http" {
		return true
	}
	for _, t := range p.toxics {
		if isHTTP(t.Effect) {
			return true
		}
	}
	return false
}

// ToxicHits returns how many requests the HTTP toxic named name has
// acted on (matched, and drawn by its toxicity); 0 for other toxics.
func (p *Proxy) ToxicHits(name string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.findLocked(name)
	if e == nil || p.httpCounts[e.serial] == nil {
		return 0
	}
	return p.httpCounts[e.serial].Load()
}

// NonHTTPConns counts the connections of an HTTP-mode proxy that did not
// speak HTTP and were passed through unchanged.
func (p *Proxy) NonHTTPConns() int64 { return p.nonHTTP.Load() }

// httpToxic is an HTTP toxic as one request sees it.
type httpToxic struct {
	effect Effect
	n      int64           // this request's number among those it matched (first, every)
	gone   <-chan struct{} // closed once the toxic is removed or changed
}

// httpToxicsFor returns the HTTP toxics that apply to one request: those
// that match it, each drawn with its toxicity.
func (p *Proxy) httpToxicsFor(method, path string) []httpToxic {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []httpToxic
	for _, t := range p.toxics {
		var m HTTPMatch
		switch e := t.Effect.(type) {
		case HTTPStatus:
			m = e.HTTPMatch
		case HTTPLatency:
			m = e.HTTPMatch
		case HTTPBody:
			m = e.HTTPMatch
		case HTTPHeader:
			m = e.HTTPMatch
		default:
			continue
		}
		if !m.matches(method, path) || !t.draw(p.rand) {
			continue
		}
		if p.httpCounts == nil {
			p.httpCounts = map[uint64]*atomic.Int64{}
		}
		n := p.httpCounts[t.serial]
		if n == nil {
			n = &atomic.Int64{}
			p.httpCounts[t.serial] = n
		}
		out = append(out, httpToxic{effect: t.Effect, n: n.Add(1), gone: t.gone})
	}
	return out
}

// looksHTTP reports whether a stream's first bytes can start an HTTP/1.x
// request line: an upper-case method token and a space.
func looksHTTP(b []byte) bool {
	for i, c := range b {
		switch {
		case c == ' ':
			return i > 0
		case c < 'A' || c > 'Z':
			return false
		}
		if i > 16 {
			return false
		}
	}
	return len(b) > 0 // too short to tell: a method's first letters
}

// serveHTTP reads HTTP requests from the client, applies the HTTP toxics,
// and forwards them through inner (whose other end goes through the byte
// toxics to the upstream). It ends, closing both, when either side does.
// Messages go on as they came (see httpwire.go); bodies stream through,
// except a response that an http_body toxic rewrites, which is read whole.
func (p *Proxy) serveHTTP(c *conn, client net.Conn, inner *net.TCPConn) {
	defer client.Close()
	defer inner.Close()
	cr := bufio.NewReader(client)
	ir := bufio.NewReader(inner)
	// Whoever speaks first decides: a server that speaks first (SMTP, MySQL)
	// is not HTTP, and waiting for its client would wait forever.
	clientFirst := peek(c, cr)
	upstreamFirst := peek(c, ir)
	select {
	case err := <-clientFirst:
		if err != nil {
			return
		}
	case err := <-upstreamFirst:
		if err != nil {
			return // closed before anyone spoke: the client sees the close
		}
		p.nonHTTP.Add(1)
		pipe(c, client, cr, clientFirst, inner, ir, nil)
		return
	}
	first, _ := cr.Peek(min(cr.Buffered(), 18))
	if !looksHTTP(first) {
		p.nonHTTP.Add(1)
		pipe(c, client, cr, nil, inner, ir, upstreamFirst)
		return
	}
	s := &httpConn{p: p, c: c, client: client, inner: inner, cr: cr, ir: ir,
		// A message goes out in as few writes as it arrives in.
		cw: &idleFlusher{w: bufio.NewWriter(client), src: ir},
		iw: &idleFlusher{w: bufio.NewWriter(inner), src: cr}}
	s.serve(upstreamFirst)
}

// httpConn is one connection in the HTTP stage: the client's side (read
// through cr, written through cw) and inner, towards the upstream (ir, iw).
type httpConn struct {
	p      *Proxy
	c      *conn
	client net.Conn
	inner  *net.TCPConn
	cr, ir *bufio.Reader
	cw, iw *idleFlusher
}

// next is what follows a response.
type next int

const (
	nextRequest next = iota // read the next request
	passRest                // pass everything from here on as it comes
	endConn                 // end the connection
)

// serve relays requests and their responses until the connection ends;
// upstreamFirst is the pending peek at the upstream's first byte.
func (s *httpConn) serve(upstreamFirst <-chan error) {
	c, cr := s.c, s.cr
	// Between requests, the upstream may close the connection (an idle
	// timeout): the client must see that close, as it would without the
	// stage, rather than a 502 for its next request.
	upstream := closeOnEnd(c, upstreamFirst, s.client)
	// While a response is pending, the client's side is watched too: a
	// client that leaves must reach the upstream, as without the stage.
	var clientNext <-chan error
	for {
		if clientNext != nil {
			if err := <-clientNext; err != nil {
				return
			}
			clientNext = nil
		}
		h, err := readHead(cr)
		if errors.Is(err, errHeadTooLarge) {
			// As net/http answers: one endless header line must not grow
			// the stage's memory.
			s.refuse(http.StatusRequestHeaderFieldsTooLarge, "faultline: request headers over 1 MiB")
			return
		}
		if err != nil {
			if len(h) > 0 { // cut short: what came goes on
				s.passRest(h, nil, upstream)
			}
			return
		}
		req, f, err := requestFraming(h)
		if err != nil || req.ProtoMajor != 1 {
			// Not HTTP/1 that the stage can frame (HTTP/2's preface, a
			// malformed head): no toxic can act on it, and it and all that
			// follows pass as they are, for the upstream to judge.
			s.p.nonHTTP.Add(1)
			s.passRest(h, nil, upstream)
			return
		}
		toxics := s.p.httpToxicsFor(req.Method, req.URL.Path)
		h, answered, keep := s.requestPhase(h, req, f, toxics)
		if !keep {
			return
		}
		if answered {
			continue
		}
		// The request goes out while its answer is awaited: an upstream may
		// answer before it has read the whole body (413, 401), and that
		// answer must reach the client, as it would without the stage.
		sent := c.async(func() error { return s.send(h, f) })
		var upErr error
		select {
		case upErr = <-upstream:
			// Answered while the request may still be going out: the
			// client is watched once it has gone, so that a client that
			// leaves a long answer still reaches the upstream.
			clientNext = afterSent(c, sent, cr, s.inner)
		case err := <-sent:
			if err != nil {
				// The request did not go out whole (either side failed):
				// the upstream, told it ends here, may still answer; the
				// connection ends after that answer.
				_ = s.inner.CloseWrite()
				req.Close = true
			} else {
				clientNext = watchClient(c, cr, s.inner)
			}
			upErr = <-upstream
		}
		if upErr != nil {
			return // closed before this request: the client has seen the close
		}
		then := s.respond(req, toxics)
		if then == nextRequest && req.Close {
			then = passRest // whatever else comes goes as it would without the stage
		}
		switch then {
		case endConn:
			return
		case passRest:
			pipe(c, s.client, cr, clientNext, s.inner, s.ir, nil)
			return
		}
		upstream = closeOnEnd(c, peek(c, s.ir), s.client)
	}
}

// refuse answers a request with status, for the connection to end: the
// answer goes out, and what the client still sends is read and dropped
// for a moment, so that closing does not reset the answer away.
func (s *httpConn) refuse(status int, msg string) {
	if writeSimple(s.client, status, msg, 0, false) != nil {
		return
	}
	if tc, ok := s.client.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = s.client.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, s.cr, 64<<20)
}

// passRest sends head (what the stage read and will not frame) to the
// upstream and passes everything after it both ways as it comes.
func (s *httpConn) passRest(head []byte, clientReady, upstreamReady <-chan error) {
	if _, err := s.inner.Write(head); err != nil {
		return
	}
	pipe(s.c, s.client, s.cr, clientReady, s.inner, s.ir, upstreamReady)
}

// send forwards a request's head and its body, as framed, to the upstream.
func (s *httpConn) send(h []byte, f framing) error {
	if _, err := s.iw.Write(h); err != nil {
		return err
	}
	if err := copyBody(s.iw, s.cr, f); err != nil {
		return err
	}
	return s.iw.Flush()
}

// maxDrain is the most of an unread request body the stage reads to keep
// a connection; as net/http's server does, past it the connection ends.
const maxDrain = 256 << 10

// idleFlusher flushes what it buffered whenever src has nothing more
// buffered: a message that arrived whole goes out in one write, and a
// streamed one (server-sent events) goes out as it arrives. It has no
// ReadFrom, so that every copy goes through Write.
type idleFlusher struct {
	w   *bufio.Writer
	src *bufio.Reader
}

func (f *idleFlusher) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil && f.src.Buffered() == 0 {
		err = f.w.Flush()
	}
	return n, err
}

func (f *idleFlusher) Flush() error { return f.w.Flush() }

// watchClient waits, while a response is pending, until the client sends
// more or leaves: a client that half-closes half-closes inner, one whose
// connection fails closes it. Its result (nil: bytes wait) must be
// received before cr is read again.
func watchClient(c *conn, cr *bufio.Reader, inner *net.TCPConn) <-chan error {
	return c.async(func() error {
		_, err := cr.Peek(1)
		switch {
		case errors.Is(err, io.EOF):
			_ = inner.CloseWrite()
		case err != nil:
			_ = inner.Close()
		}
		return err
	})
}

// afterSent is watchClient once the request has gone out (sent): the
// send's error if it failed, else the watch's result. Its result must be
// received before cr is read again.
func afterSent(c *conn, sent <-chan error, cr *bufio.Reader, inner *net.TCPConn) <-chan error {
	return c.async(func() error {
		if err := <-sent; err != nil {
			return err
		}
		return <-watchClient(c, cr, inner)
	})
}

// peek waits until r has a byte or has ended; its result (nil: bytes wait)
// must be received before r is read again.
func peek(c *conn, r *bufio.Reader) <-chan error {
	return c.async(func() error {
		_, err := r.Peek(1)
		return err
	})
}

// closeOnEnd passes on the upstream's peek, closing client first if the
// upstream has ended.
func closeOnEnd(c *conn, upstream <-chan error, client net.Conn) <-chan error {
	return c.async(func() error {
		err := <-upstream
		if err != nil {
			_ = client.Close()
		}
		return err
	})
}

// pipe passes bytes both ways unchanged, from the client (read through cr,
// once clientReady has a result, if not nil) to inner and from inner (read
// through ir, once innerReady has) to the client, half-closing each side as
// the other ends.
func pipe(c *conn, client net.Conn, cr io.Reader, clientReady <-chan error, inner *net.TCPConn, ir io.Reader, innerReady <-chan error) {
	done := c.async(func() error {
		if clientReady != nil {
			<-clientReady
		}
		_, _ = io.Copy(inner, cr)
		return inner.CloseWrite()
	})
	if innerReady != nil {
		<-innerReady
	}
	_, _ = io.Copy(client, ir)
	if tc, ok := client.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}

// requestPhase applies the toxics that act before forwarding, and returns
// the head to forward. answered is true when an http_status toxic answered
// (and the body was read and dropped); keep is false when the connection
// must end.
func (s *httpConn) requestPhase(h []byte, req *http.Request, f framing, toxics []httpToxic) (_ []byte, answered, keep bool) {
	for _, t := range toxics {
		switch e := t.effect.(type) {
		case HTTPLatency:
			if e.Phase == "request" && !sleep(s.p.delay(e.Delay, e.Jitter), t.gone, s.c.done) {
				return h, false, false
			}
		case HTTPHeader:
			if e.Phase == "request" {
				h = editHead(h, e)
			}
		}
	}
	for _, t := range toxics {
		e, ok := t.effect.(HTTPStatus)
		if !ok {
			continue
		}
		if n := t.n; e.First > 0 && n > int64(e.First) || e.Every > 0 && n%int64(e.Every) != 0 {
			continue
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			// The client sends the body only when told to: the stage
			// reads and drops it after its answer.
			if _, err := io.WriteString(s.client, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return h, true, false
			}
		}
		if err := writeSimple(s.client, e.Status, e.Body, e.RetryAfter, true); err != nil {
			return h, true, false
		}
		// The body nobody will read is consumed, so that the next request
		// starts where it should; past a limit, as net/http does, the
		// connection ends instead.
		if f.length > maxDrain {
			return h, true, false
		}
		if _, err := readBody(s.cr, f, maxDrain); err != nil {
			return h, true, false
		}
		return h, true, !req.Close
	}
	return h, false, true
}

// sleep waits d, or until gone is closed (the toxic that delays is
// removed: the wait ends early), or until done is closed (false).
func sleep(d time.Duration, gone, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-gone:
		return true
	case <-done:
		return false
	}
}

// respond relays the upstream's answer to req: interim responses (100
// Continue) as they come, then the final one, through the response toxics.
// The body streams through unless an http_body toxic rewrites it.
func (s *httpConn) respond(req *http.Request, toxics []httpToxic) next {
	for {
		h, err := readHead(s.ir)
		if errors.Is(err, errHeadTooLarge) {
			// The client may still be watched (cr is not the stage's to
			// read here): the answer goes, then the connection ends.
			_ = writeSimple(s.cw, http.StatusBadGateway, "faultline: upstream response headers over 1 MiB", 0, false)
			_ = s.cw.Flush()
			return endConn
		}
		if err != nil {
			if len(h) > 0 { // cut short: what came goes on
				_, _ = s.cw.Write(h)
				_ = s.cw.Flush()
			}
			return endConn
		}
		resp, f, err := responseFraming(h, req)
		if err != nil {
			// An answer the stage cannot frame: it and what follows go on
			// as they are.
			if _, err := s.cw.Write(h); err != nil || s.cw.Flush() != nil {
				return endConn
			}
			return passRest
		}
		code := resp.StatusCode
		if code/100 == 1 && code != http.StatusSwitchingProtocols {
			if _, err := s.cw.Write(h); err != nil || s.cw.Flush() != nil {
				return endConn
			}
			continue // the final response follows
		}
		if code == http.StatusSwitchingProtocols || req.Method == http.MethodConnect && code/100 == 2 {
			// Another protocol from here on (a WebSocket, a tunnel).
			if _, err := s.cw.Write(h); err != nil || s.cw.Flush() != nil {
				return endConn
			}
			return passRest
		}
		if !s.respondFinal(h, req, f, toxics) {
			return endConn
		}
		if resp.Close || f.length < 0 && !f.chunked {
			return passRest
		}
		return nextRequest
	}
}

// respondFinal writes a final response whose head is h, applying the
// response toxics; false means the connection must end. A body that ends
// with the connection (no length) is left for passRest to carry, unless a
// toxic rewrites it.
func (s *httpConn) respondFinal(h []byte, req *http.Request, f framing, toxics []httpToxic) bool {
	rewrite := false
	for _, t := range toxics {
		if _, ok := t.effect.(HTTPBody); ok && (f.chunked || f.length != 0) {
			rewrite = true
		}
	}
	var body []byte
	if rewrite {
		var err error
		if body, err = readBody(s.ir, f, maxHTTPBody); err != nil {
			_ = writeSimple(s.cw, http.StatusBadGateway, "faultline: upstream response body unreadable or over 32 MiB", 0, false)
			_ = s.cw.Flush()
			return false
		}
	}
	for _, t := range toxics {
		switch e := t.effect.(type) {
		case HTTPLatency:
			if e.Phase != "request" && !sleep(s.p.delay(e.Delay, e.Jitter), t.gone, s.c.done) {
				return false
			}
		case HTTPHeader:
			if e.Phase != "request" {
				h = editHead(h, e)
			}
		case HTTPBody:
			if rewrite {
				body = s.p.editBody(e, body)
			}
		}
	}
	if rewrite {
		h = withLength(h, len(body))
	}
	if _, err := s.cw.Write(h); err != nil {
		return false
	}
	if rewrite {
		_, err := s.cw.Write(body)
		return err == nil && s.cw.Flush() == nil
	}
	if f.length < 0 && !f.chunked {
		return s.cw.Flush() == nil // the body follows until the upstream closes
	}
	// What was written goes out even if the upstream failed mid-body, as
	// it would without the stage.
	err := copyBody(s.cw, s.ir, f)
	return s.cw.Flush() == nil && err == nil
}

func (p *Proxy) editBody(e HTTPBody, body []byte) []byte {
	body, _ = e.rewriteJSON(body)
	if e.Garble > 0 && len(body) > 0 {
		body = bytes.Clone(body)
		garble(body, e.Garble, p.rand.child())
	}
	if e.Truncate >= 0 && e.Truncate < len(body) {
		body = body[:e.Truncate]
	}
	return body
}

// writeSimple writes a response made by the proxy, keeping the connection
// usable: an http_status toxic's answer (fromToxic), or the stage's own.
func writeSimple(w io.Writer, status int, body string, retryAfter int, fromToxic bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	ct := "text/plain; charset=utf-8"
	if strings.HasPrefix(strings.TrimSpace(body), "{") {
		ct = "application/json"
	}
	fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n", ct, len(body))
	if retryAfter > 0 {
		b.WriteString("Retry-After: " + strconv.Itoa(retryAfter) + "\r\n")
	}
	if fromToxic {
		b.WriteString("X-Faultline-Toxic: http_status\r\n")
	} else {
		b.WriteString("X-Faultline: proxy\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	_, err := io.WriteString(w, b.String())
	return err
}

// loopbackPair returns the two ends of a new loopback TCP connection.
func loopbackPair() (a, b *net.TCPConn, err error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type res struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r := res{err: errPanic}
		defer func() { _ = recover(); ch <- r }() // nothing here should panic; if it does, no pair
		r.c, r.err = ln.AcceptTCP()
	}()
	a, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		_ = ln.Close() // ends the accept
	}
	r := <-ch
	if err == nil && r.err == nil && r.c.RemoteAddr().String() != a.LocalAddr().String() {
		r.err = errors.New("loopback pair: another process connected first")
	}
	if err != nil || r.err != nil {
		if a != nil {
			a.Close()
		}
		if r.c != nil {
			r.c.Close()
		}
		return nil, nil, errors.Join(err, r.err)
	}
	return a, r.c, nil
}

// garble changes n distinct bytes of body, each to another value; n at or
// past the body's length changes every byte once. The work is the body's
// size at most, however large n is.
func garble(body []byte, n int, r *rand.Rand) {
	if n >= len(body) {
		for i := range body {
			body[i] ^= byte(1 + r.IntN(255))
		}
		return
	}
	// Floyd's sampling: n distinct positions in n draws.
	picked := make([]uint64, (len(body)+63)/64)
	for j := len(body) - n; j < len(body); j++ {
		i := r.IntN(j + 1)
		if picked[i/64]&(1<<(i%64)) != 0 {
			i = j
		}
		picked[i/64] |= 1 << (i % 64)
		body[i] ^= byte(1 + r.IntN(255))
	}
}
