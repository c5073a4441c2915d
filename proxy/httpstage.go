package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
	n      int64 // this request's number among those it matched (first, every)
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
		out = append(out, httpToxic{effect: t.Effect, n: n.Add(1)})
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
// Bodies stream through, except a response that an http_body toxic
// rewrites, which is read whole.
func (p *Proxy) serveHTTP(c *conn, client net.Conn, inner *net.TCPConn) {
	defer client.Close()
	defer inner.Close()
	done := c.done
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
	// Responses go out in as few writes as they arrive in: Response.Write
	// writes its status line, headers and body in separate calls.
	cw := &idleFlusher{w: bufio.NewWriter(client), src: ir}
	// Between requests, the upstream may close the connection (an idle
	// timeout): the client must see that close, as it would without the
	// stage, rather than a 502 for its next request.
	upstream := closeOnEnd(c, upstreamFirst, client)
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
		req, err := http.ReadRequest(cr)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				writeSimple(client, http.StatusBadRequest, "faultline: malformed HTTP request: "+err.Error(), 0)
			}
			return
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			// The stage answers it: a toxic may answer the request itself.
			req.Header.Del("Expect")
			if _, err := io.WriteString(client, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return
			}
		}
		toxics := p.httpToxicsFor(req.Method, req.URL.Path)
		keep, answered := p.requestPhase(client, req, toxics, done)
		if !keep {
			return
		}
		if answered {
			// The body nobody will read is consumed, so that the next
			// request starts where it should; past a limit, as net/http
			// does, the connection ends instead.
			if n, err := io.CopyN(io.Discard, req.Body, maxDrain+1); n > maxDrain || err != nil && err != io.EOF {
				return
			}
			continue
		}
		if _, ok := req.Header["User-Agent"]; !ok {
			req.Header["User-Agent"] = []string{""} // Request.Write would add Go's own
		}
		// The request goes out while its answer is awaited: an upstream may
		// answer before it has read the whole body (413, 401), and that
		// answer must reach the client, as it would without the stage.
		sent := c.async(func() error { return req.Write(inner) })
		var upErr error
		select {
		case upErr = <-upstream:
		case err := <-sent:
			sent = nil
			if err != nil {
				// The request did not go out whole (either side failed):
				// the upstream, told it ends here, may still answer; the
				// connection ends after that answer.
				_ = inner.CloseWrite()
				req.Close = true
			} else {
				clientNext = watchClient(c, cr, inner)
			}
			upErr = <-upstream
		}
		if upErr != nil {
			return // closed before this request: the client has seen the close
		}
		resp, err := http.ReadResponse(ir, req)
		if err != nil {
			writeSimple(client, http.StatusBadGateway, "faultline: upstream response: "+err.Error(), 0)
			return
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// Another protocol from here on (a WebSocket): pass it through.
			if resp.Write(cw) != nil || cw.Flush() != nil {
				return
			}
			pipe(c, client, cr, clientNext, inner, ir, nil)
			return
		}
		if !p.respond(cw, req, resp, toxics, done) || req.Close || resp.Close {
			return
		}
		if sent != nil { // answered while the request was still going out
			if err := <-sent; err != nil {
				return
			}
			clientNext = watchClient(c, cr, inner)
		}
		upstream = closeOnEnd(c, peek(c, ir), client)
	}
}

// maxDrain is the most of an unread request body the stage reads to keep
// a connection; as net/http's server does, past it the connection ends.
const maxDrain = 256 << 10

// idleFlusher flushes what it buffered whenever src has nothing more
// buffered: a response that arrived whole goes out in one write, and a
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

// requestPhase applies the toxics that act before forwarding. answered is
// true when an http_status toxic answered; keep is false when the
// connection must end.
func (p *Proxy) requestPhase(client net.Conn, req *http.Request, toxics []httpToxic, done <-chan struct{}) (keep, answered bool) {
	for _, t := range toxics {
		switch e := t.effect.(type) {
		case HTTPLatency:
			if e.Phase == "request" && !sleep(p.delay(e.Delay, e.Jitter), done) {
				return false, false
			}
		case HTTPHeader:
			if e.Phase == "request" {
				editHeader(req.Header, e)
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
		if err := writeSimple(client, e.Status, e.Body, e.RetryAfter); err != nil {
			return false, true
		}
		return !req.Close, true
	}
	return true, false
}

// sleep waits d, or until done is closed (false).
func sleep(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// respond applies the response toxics and writes the response to client,
// flushed; false means the connection must end. The body streams through
// unless an http_body toxic rewrites it.
func (p *Proxy) respond(client *idleFlusher, req *http.Request, resp *http.Response, toxics []httpToxic, done <-chan struct{}) bool {
	// The body is never closed here: closing it would read the rest of a
	// stream the client has left. Write reads it to its end; on any
	// failure the connection ends.
	noBody := req.Method == http.MethodHead || resp.StatusCode/100 == 1 || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	rewrite := false
	for _, t := range toxics {
		if _, ok := t.effect.(HTTPBody); ok && !noBody {
			rewrite = true
		}
	}
	var body []byte
	if rewrite {
		var err error
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
		if err != nil || len(body) > maxHTTPBody {
			_ = writeSimple(client, http.StatusBadGateway, "faultline: upstream response body unreadable or over 32 MiB", 0)
			_ = client.Flush()
			return false
		}
	}
	for _, t := range toxics {
		switch e := t.effect.(type) {
		case HTTPLatency:
			if e.Phase != "request" && !sleep(p.delay(e.Delay, e.Jitter), done) {
				return false
			}
		case HTTPHeader:
			if e.Phase != "request" {
				editHeader(resp.Header, e)
			}
		case HTTPBody:
			if rewrite {
				body = p.editBody(e, body)
			}
		}
	}
	if rewrite {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength, resp.TransferEncoding = int64(len(body)), nil
		resp.Header.Del("Content-Length")
	}
	if !rewrite {
		resp.Body = io.NopCloser(resp.Body) // Write closes what it was given
	}
	// What was written goes out even if the upstream failed mid-body, as
	// it would without the stage.
	err := resp.Write(client)
	return client.Flush() == nil && err == nil
}

func (p *Proxy) editBody(e HTTPBody, body []byte) []byte {
	body, _ = e.rewriteJSON(body)
	if e.Garble > 0 && len(body) > 0 {
		body = bytes.Clone(body)
		for range e.Garble {
			i := p.rand.Int64N(int64(len(body)))
			body[i] ^= byte(1 + p.rand.Int64N(255))
		}
	}
	if e.Truncate >= 0 && e.Truncate < len(body) {
		body = body[:e.Truncate]
	}
	return body
}

func editHeader(h http.Header, e HTTPHeader) {
	for _, k := range e.Drop {
		h.Del(k)
	}
	for k, v := range e.Set {
		h.Set(k, v)
	}
	for k, v := range e.Add {
		h.Add(k, v)
	}
}

// writeSimple writes a response made by the proxy, keeping the connection
// usable.
func writeSimple(w io.Writer, status int, body string, retryAfter int) error {
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
	b.WriteString("X-Faultline-Toxic: http_status\r\n\r\n")
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
