package load

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// transport sends the HTTP requests of a run: each as the bytes of its
// Request, rendered once by net/http's own request writer, on a kept-alive
// connection of its own pool, its answer read by net/http's response
// reader. net/http's Transport would hand every request and response
// between three goroutines and its Client would arm a timer for each: at
// the rates a load generator runs, that cost the machine more than the
// server under test. This costs nothing but the worker's own goroutine.
//
// A response body is read and dropped, a redirect is not followed, each
// request gets the timeout (dial, write and read together), and HTTP
// proxies are not used.
type transport struct {
	timeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*conn // by address
	closed bool
}

// kind is one Request, ready to send.
type kind struct {
	addr   string // host:port
	tls    *tls.Config
	method string
	wire   []byte // the whole request as it goes on the wire
}

type conn struct {
	net.Conn
	br *bufio.Reader
}

func newTransport(timeout time.Duration) *transport {
	return &transport{timeout: timeout, idle: map[string][]*conn{}}
}

// httpDoer sends one Request over the transport.
type httpDoer struct {
	t *transport
	k *kind
}

func (d httpDoer) do(deadline time.Time) (int, error) { return d.t.send(d.k, deadline, true) }

// add renders r, an HTTP Request, for the transport.
func (t *transport) add(r Request) (doer, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, err
	}
	k := &kind{method: method, addr: u.Host}
	switch u.Scheme {
	case "http":
		if u.Port() == "" {
			k.addr = net.JoinHostPort(u.Hostname(), "80")
		}
	case "https":
		if u.Port() == "" {
			k.addr = net.JoinHostPort(u.Hostname(), "443")
		}
		k.tls = &tls.Config{ServerName: u.Hostname()}
	default:
		return nil, fmt.Errorf("url: want an http or https URL, got %q", r.URL)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url: no host in %q", r.URL)
	}
	req, err := http.NewRequest(method, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "faultline")
	}
	if len(r.Body) == 0 {
		req.Body, req.ContentLength = nil, 0
	}
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		return nil, fmt.Errorf("%s: %w", r.URL, err)
	}
	k.wire = b.Bytes()
	return httpDoer{t: t, k: k}, nil
}

// send writes k on a connection and reads the status of its answer. A
// kept-alive connection that the server closed while it was idle fails
// before any answer: then send tries once more on a new one.
func (t *transport) send(k *kind, deadline time.Time, mayRetry bool) (int, error) {
	c, reused, err := t.get(k, deadline)
	if err != nil {
		return 0, err
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(k.wire); err != nil {
		_ = c.Close()
		if reused && mayRetry {
			return t.send(k, deadline, false)
		}
		return 0, err
	}
	// Nothing of an answer came: the server had closed the idle
	// connection. (Part of one is an answer, cut: no second try.)
	if _, err := c.br.Peek(1); err != nil {
		_ = c.Close()
		if reused && mayRetry && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
			return t.send(k, deadline, false)
		}
		return 0, err
	}
	code, keepAlive, err := readResponse(c.br, k.method == http.MethodHead)
	if keepAlive {
		t.put(k.addr, c)
	} else {
		_ = c.Close()
	}
	return code, err
}

// get takes an idle connection to k's address, or dials one.
func (t *transport) get(k *kind, deadline time.Time) (*conn, bool, error) {
	t.mu.Lock()
	if idle := t.idle[k.addr]; len(idle) > 0 {
		c := idle[len(idle)-1]
		t.idle[k.addr] = idle[:len(idle)-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
	var nc net.Conn
	var err error
	if k.tls != nil {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: k.tls}).Dial("tcp", k.addr)
	} else {
		nc, err = d.Dial("tcp", k.addr)
	}
	if err != nil {
		return nil, false, err
	}
	return &conn{Conn: nc, br: bufio.NewReaderSize(nc, 4096)}, false, nil
}

// put keeps c for the next request to addr (which sets its own deadline).
func (t *transport) put(addr string, c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return
	}
	t.idle[addr] = append(t.idle[addr], c)
}

// close closes the idle connections, and those still in use as they come
// back.
func (t *transport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for addr, cs := range t.idle {
		for _, c := range cs {
			_ = c.Close()
		}
		delete(t.idle, addr)
	}
}
