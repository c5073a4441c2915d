package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
)

// shopAPI is an upstream that answers JSON and counts what reached it.
func shopAPI(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/charge":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", "yes")
			fmt.Fprint(w, `{"charge_id":"ch_1","status":"succeeded","amount":1250,"items":[{"price":"10.5"},{"price":"2"}]}`)
		case "/chunked":
			f := w.(http.Flusher)
			for i := range 3 {
				fmt.Fprintf(w, `{"part":%d}`, i)
				f.Flush() // makes the response chunked
			}
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func keepAliveClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
}

func do(t *testing.T, c *http.Client, method, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"order_id":1}`))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

func TestHTTPStatusAnswersInsteadOfForwarding(t *testing.T) {
	srv, hits := shopAPI(t)
	p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "fail", Effect: proxy.HTTPStatus{
		HTTPMatch: proxy.HTTPMatch{Method: "POST", Path: "/charge"}, Status: 503, Body: `{"error":"down"}`, RetryAfter: 2, Every: 2}})
	c := keepAliveClient()
	base := "http://" + p.Listen()
	var codes []int
	for range 4 {
		resp, body := do(t, c, "POST", base+"/charge")
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 503 && (body != `{"error":"down"}` || resp.Header.Get("Retry-After") != "2") {
			t.Fatalf("answer: %q, Retry-After %q", body, resp.Header.Get("Retry-After"))
		}
	}
	if fmt.Sprint(codes) != "[200 503 200 503]" {
		t.Errorf("every 2nd POST /charge: codes %v", codes)
	}
	if resp, _ := do(t, c, "GET", base+"/other"); resp.StatusCode != 200 {
		t.Errorf("unmatched GET /other = %d", resp.StatusCode)
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("upstream saw %d requests, want 3 (answered ones never reach it)", n)
	}
	if p.NumConns() != 1 {
		t.Errorf("%d connections: keep-alive should have used one", p.NumConns())
	}
}

func TestHTTPStatusFirstN(t *testing.T) {
	srv, _ := shopAPI(t)
	p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.HTTPStatus{Status: 500, First: 2}})
	c := keepAliveClient()
	var codes []int
	for range 4 {
		resp, _ := do(t, c, "GET", "http://"+p.Listen()+"/x")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[500 500 200 200]" {
		t.Errorf("first 2: %v", codes)
	}
	if n := p.ToxicHits("http_status_downstream"); n != 4 {
		t.Errorf("ToxicHits = %d, want the 4 requests it matched", n)
	}
}

func TestHTTPBodyJSONEdits(t *testing.T) {
	srv, _ := shopAPI(t)
	p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.HTTPBody{HTTPMatch: proxy.HTTPMatch{Path: "/charge"},
		Null: []string{"$.status"}, Drop: []string{"$.charge_id"}, Rename: map[string]string{"$.amount": "amount_cents"},
		Retype: []string{"$.items[*].price"}, Truncate: -1}})
	c := keepAliveClient()
	for range 2 { // twice on one connection: lengths must stay right
		resp, body := do(t, c, "POST", "http://"+p.Listen()+"/charge")
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("rewritten body is not JSON: %v: %q", err, body)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
		}
		if v, ok := got["status"]; !ok || v != nil {
			t.Errorf("status: %v (present %v), want null", v, ok)
		}
		if _, ok := got["charge_id"]; ok {
			t.Error("charge_id not dropped")
		}
		if got["amount_cents"] != 1250.0 || got["amount"] != nil {
			t.Errorf("rename: %v", got)
		}
		items := got["items"].([]any)
		if items[0].(map[string]any)["price"] != 10.5 || items[1].(map[string]any)["price"] != 2.0 {
			t.Errorf("retype: %v", items)
		}
	}
}

func TestHTTPBodyTruncateChunked(t *testing.T) {
	srv, _ := shopAPI(t)
	p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.HTTPBody{Truncate: 5}})
	c := keepAliveClient()
	for range 2 {
		resp, body := do(t, c, "GET", "http://"+p.Listen()+"/chunked")
		if body != `{"par` || resp.ContentLength != 5 || len(resp.TransferEncoding) != 0 {
			t.Fatalf("truncated chunked body: %q, length %d, %v", body, resp.ContentLength, resp.TransferEncoding)
		}
	}
}

func TestHTTPHeaderAndLatency(t *testing.T) {
	srv, _ := shopAPI(t)
	p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "h", Effect: proxy.HTTPHeader{Drop: []string{"X-Upstream"}, Set: map[string]string{"Cache-Control": "no-store"}}})
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "l", Effect: proxy.HTTPLatency{HTTPMatch: proxy.HTTPMatch{Path: "/charge"}, Delay: 300 * time.Millisecond}})
	c := keepAliveClient()
	start := time.Now()
	resp, _ := do(t, c, "POST", "http://"+p.Listen()+"/charge")
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("response came after %v, before the 300 ms delay", took)
	}
	if resp.Header.Get("X-Upstream") != "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", resp.Header)
	}
}

// tcpServer serves each connection with handle (then closes it) on a
// loopback port until the test ends, and returns its address.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}

// A connection that does not speak HTTP passes through an HTTP-mode proxy
// unchanged, and is counted.
func TestHTTPModePassesOtherProtocols(t *testing.T) {
	c, r, p := httpModeProxy(t, tcpServer(t, func(c net.Conn) { _, _ = io.Copy(c, c) }))
	msg := "*1\r\n$4\r\nPING\r\n"
	fmt.Fprint(c, msg)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo through HTTP mode: %q, %v", buf, err)
	}
	if p.NonHTTPConns() != 1 {
		t.Errorf("NonHTTPConns = %d, want 1", p.NonHTTPConns())
	}
}

// With Protocol "http", a toxic added later acts on a connection opened
// before it; a malformed request gets a 400.
func TestHTTPModeLiveConnections(t *testing.T) {
	srv, _ := shopAPI(t)
	p := proxy.New(proxy.Config{Name: "pay", Listen: "127.0.0.1:0", Upstream: strings.TrimPrefix(srv.URL, "http://"), Protocol: "http"})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c := keepAliveClient()
	if resp, _ := do(t, c, "GET", "http://"+p.Listen()+"/x"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.HTTPStatus{Status: 502}})
	if resp, _ := do(t, c, "GET", "http://"+p.Listen()+"/x"); resp.StatusCode != 502 {
		t.Errorf("after the toxic, on the same connection: %d", resp.StatusCode)
	}
	if p.NumConns() != 1 {
		t.Errorf("%d connections, want the one kept alive", p.NumConns())
	}
	raw, err := net.Dial("tcp", p.Listen())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprint(raw, "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n")
	line, _ := bufio.NewReader(raw).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Errorf("malformed request: %q", line)
	}
}

func TestHTTPToxicsThroughTheAPI(t *testing.T) {
	srv, _ := shopAPI(t)
	_, api := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	cl := proxy.NewClient(api, "")
	ctx := t.Context()
	if _, err := cl.CreateProxy(ctx, "pay", "127.0.0.1:0", strings.TrimPrefix(srv.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	// Attributes as toxiproxy-cli sends them: lists as one string.
	_, err := cl.AddToxic(ctx, "pay", proxy.ToxicInfo{Name: "null", Type: "http_body", Stream: "downstream", Toxicity: 1,
		Attributes: map[string]any{"null": "$.status, $.charge_id", "path": "/charge"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cl.Proxy(ctx, "pay")
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, keepAliveClient(), "POST", "http://"+info.Listen+"/charge")
	if resp.StatusCode != 200 || !strings.Contains(body, `"status":null`) || !strings.Contains(body, `"charge_id":null`) {
		t.Errorf("through the API: %d %s", resp.StatusCode, body)
	}
	_, err = cl.AddToxic(ctx, "pay", proxy.ToxicInfo{Name: "bad", Type: "http_status", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"status": 99}})
	var ae *proxy.APIError
	if !asAPIError(err, &ae) || ae.Status != 400 {
		t.Errorf("status 99: %v, want a 400", err)
	}
	_, err = cl.AddToxic(ctx, "pay", proxy.ToxicInfo{Name: "bad", Type: "http_body", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"drop": "status"}})
	if !asAPIError(err, &ae) || ae.Status != 400 || !strings.Contains(err.Error(), "must start with $") {
		t.Errorf("bad JSON path: %v, want a 400 naming it", err)
	}
	_, err = cl.AddToxic(ctx, "pay", proxy.ToxicInfo{Name: "bad", Type: "http_status", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"status": 503, "first": 2, "every": 3}})
	if !asAPIError(err, &ae) || ae.Status != 400 || !strings.Contains(err.Error(), "first and every are alternatives") {
		t.Errorf("first and every together: %v, want a 400 saying they are alternatives", err)
	}
}

func asAPIError(err error, ae **proxy.APIError) bool { return errors.As(err, ae) }

// FuzzHTTPStage sends arbitrary bytes to a proxy reading HTTP: it answers
// or closes, never hangs, never panics, and keeps serving.
func FuzzHTTPStage(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /charge HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /charge HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "GET /\r\n\r\n", "\x00\x01binary", "PING\r\n",
	} {
		f.Add([]byte(s))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	p := proxy.New(proxy.Config{Name: "fuzz", Listen: "127.0.0.1:0", Upstream: strings.TrimPrefix(srv.URL, "http://"), Protocol: "http", Seed: 1})
	if err := p.Start(); err != nil {
		f.Fatal(err)
	}
	defer p.Stop()
	if _, err := p.AddToxic(proxy.Toxic{Effect: proxy.HTTPBody{Null: []string{"$.status"}, Truncate: -1}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", p.Listen())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(raw)
		_ = c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("reading the answer to %q: %v (the proxy hung)", raw, err)
		}
	})
}

// httpProxy starts a proxy in HTTP mode in front of srv and dials it.
func httpProxy(t *testing.T, upstream string) (net.Conn, *bufio.Reader) {
	c, r, _ := httpModeProxy(t, upstream)
	return c, r
}

// httpModeProxy is httpProxy that also returns the proxy.
func httpModeProxy(t *testing.T, upstream string) (net.Conn, *bufio.Reader, *proxy.Proxy) {
	t.Helper()
	p := proxy.New(proxy.Config{Name: t.Name(), Listen: "127.0.0.1:0", Upstream: upstream, Protocol: "http"})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	c, err := net.Dial("tcp", p.Listen())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c), p
}

// What the HTTP stage must not change: the upstream closing a kept-alive
// connection reaches the client as a close (not a 502 for its next
// request), no User-Agent is added, Expect: 100-continue reaches the
// upstream, which answers it, and a protocol switch works as it does
// without the stage.
func TestHTTPModeIsTransparent(t *testing.T) {
	t.Run("upstream closes an idle connection", func(t *testing.T) {
		srv, _ := shopAPI(t)
		c, br := httpProxy(t, strings.TrimPrefix(srv.URL, "http://"))
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		srv.CloseClientConnections()
		if b, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the upstream closed: read %q, %v; want EOF", b, err)
		}
	})
	t.Run("no User-Agent added; 100-continue", func(t *testing.T) {
		got := make(chan string, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- fmt.Sprintf("ua=%q expect=%q body=%s", r.Header.Values("User-Agent"), r.Header.Get("Expect"), b)
		}))
		defer srv.Close()
		c, br := httpProxy(t, strings.TrimPrefix(srv.URL, "http://"))
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("want 100 Continue before the body, got %q %v", line, err)
		}
		_, _ = br.ReadString('\n') // the blank line after it
		fmt.Fprint(c, "hi")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("response: %v %v", resp, err)
		}
		if s := <-got; s != `ua=[] expect="100-continue" body=hi` {
			t.Errorf("the upstream saw %s", s)
		}
	})
	t.Run("101 switching protocols", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			_ = rw.Flush()
			line, _ := rw.ReadString('\n')
			fmt.Fprint(rw, "echo: "+line)
			_ = rw.Flush()
		}))
		defer srv.Close()
		c, br := httpProxy(t, strings.TrimPrefix(srv.URL, "http://"))
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: shop\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("response: %v %v", resp, err)
		}
		fmt.Fprint(c, "not HTTP at all\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo: not HTTP at all\n" {
			t.Fatalf("after the switch: %q %v", line, err)
		}
	})
}

// reset_peer in HTTP mode resets the real client's connection too.
func TestHTTPModeResetPeer(t *testing.T) {
	srv, _ := shopAPI(t)
	p := proxy.New(proxy.Config{Name: t.Name(), Listen: "127.0.0.1:0", Upstream: strings.TrimPrefix(srv.URL, "http://"), Protocol: "http"})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "rst", Stream: proxy.Upstream, Effect: proxy.ResetPeer{}})
	c, err := net.Dial("tcp", p.Listen())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
	_, err = io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after reset_peer: %v, want connection reset", err)
	}
}

// Bodies stream through the HTTP stage: server-sent events arrive one by
// one, with the header toxic applied, and bodies larger than an http_body
// toxic may read whole pass both ways intact.
func TestHTTPModeStreamsBodies(t *testing.T) {
	big := make([]byte, 40<<20)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
			select { // the second event only once the client has the first
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
				return
			}
			fmt.Fprint(w, "data: 2\n\n")
		case "/big":
			_, _ = w.Write(big)
		case "/upload":
			sum := sha256.New()
			n, _ := io.Copy(sum, r.Body)
			fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
		}
	}))
	t.Cleanup(srv.Close)
	p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "h", Effect: proxy.HTTPHeader{Set: map[string]string{"X-Through": "faultline"}}})
	c := keepAliveClient()
	c.Timeout = 20 * time.Second
	base := "http://" + p.Listen()

	resp, err := c.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Through") != "faultline" {
		t.Errorf("the header toxic did not act on the stream: %v", resp.Header)
	}
	events := bufio.NewReader(resp.Body)
	first, err := events.ReadString('\n')
	if err != nil || first != "data: 1\n" {
		t.Fatalf("first event: %q, %v (held back until the stream ends?)", first, err)
	}
	close(next)
	rest, err := io.ReadAll(events)
	if err != nil || string(rest) != "\ndata: 2\n\n" {
		t.Fatalf("rest of the stream: %q, %v", rest, err)
	}

	resp, body := do(t, c, "GET", base+"/big")
	if resp.StatusCode != 200 || body != string(big) {
		t.Errorf("40 MiB response: %s, %d bytes, intact %v", resp.Status, len(body), body == string(big))
	}
	up, err := c.Post(base+"/upload", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(up.Body)
	up.Body.Close()
	if want := fmt.Sprintf("%d %x", len(big), sha256.Sum256(big)); string(got) != want {
		t.Errorf("40 MiB request: upstream read %q, want %q", got, want)
	}
}

// A server that speaks first (an SMTP banner) is not HTTP: an HTTP-mode
// proxy passes it through instead of waiting for the client, who waits for
// the banner.
func TestHTTPModeServerSpeaksFirst(t *testing.T) {
	c, r, p := httpModeProxy(t, tcpServer(t, func(c net.Conn) {
		fmt.Fprint(c, "220 mail ready\r\n")
		_, _ = io.Copy(c, c)
	}))
	if banner, err := r.ReadString('\n'); err != nil || banner != "220 mail ready\r\n" {
		t.Fatalf("banner: %q, %v", banner, err)
	}
	fmt.Fprint(c, "HELO test\r\n")
	if echo, err := r.ReadString('\n'); err != nil || echo != "HELO test\r\n" {
		t.Fatalf("after the banner: %q, %v", echo, err)
	}
	if p.NonHTTPConns() != 1 {
		t.Errorf("NonHTTPConns = %d, want 1", p.NonHTTPConns())
	}
}

// A response with a length or ended by a close streams too; one the
// upstream cuts short reaches the client as far as it came, as without
// the stage.
func TestHTTPModeStreamsLengthAndCloseBodies(t *testing.T) {
	next := make(chan struct{})
	upstream := tcpServer(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nfirst-part")
		select { // the rest only once the client has the first part
		case <-next:
		case <-time.After(20 * time.Second):
		}
		fmt.Fprint(c, "-and-rest")
		// and the upstream ends one byte short
	})
	c, r, _ := httpModeProxy(t, upstream)
	fmt.Fprint(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("headers held back: %v", err)
	}
	first := make([]byte, len("first-part"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first-part" {
		t.Fatalf("first part: %q, %v (held back until the body ends?)", first, err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if string(rest) != "-and-rest" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("rest of a body cut short: %q, %v; want what came, then the cut", rest, err)
	}
}

// A client that leaves a stream reaches the upstream, whether the stream
// is sending or silent, as without the stage: the upstream's request ends
// instead of streaming on to nobody.
func TestHTTPModeClientLeavesAStream(t *testing.T) {
	for _, mode := range []string{"ticking", "silent"} {
		t.Run(mode, func(t *testing.T) {
			ended := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(ended)
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "data: hello\n\n")
				w.(http.Flusher).Flush()
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				limit := time.After(60 * time.Second)
				for {
					select {
					case <-r.Context().Done():
						return
					case <-limit:
						return
					case <-tick.C:
						if mode == "ticking" {
							fmt.Fprint(w, "data: tick\n\n")
							w.(http.Flusher).Flush()
						}
					}
				}
			}))
			t.Cleanup(srv.Close)
			c, r, _ := httpModeProxy(t, strings.TrimPrefix(srv.URL, "http://"))
			fmt.Fprint(c, "GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || line != "data: hello\n" {
				t.Fatalf("first event: %q, %v", line, err)
			}
			c.Close()
			select {
			case <-ended:
			case <-time.After(30 * time.Second):
				t.Fatal("the upstream still streams 30 s after the client left")
			}
		})
	}
}

// A request answered by http_status whose body is over the drain limit
// ends the connection after the answer instead of reading it all.
func TestHTTPStatusLargeUnreadBody(t *testing.T) {
	srv, hits := shopAPI(t)
	c, r, p := httpModeProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	proxytest.AddToxic(t, p, proxy.Toxic{Effect: proxy.HTTPStatus{Status: 503}})
	go func() {
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", 64<<20)
		_, _ = c.Write(make([]byte, 64<<20)) // fails once the proxy has closed
	}()
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("answer: %v, %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if _, err := r.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the connection stayed open after an unread 64 MiB body (%v)", err)
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests reached the upstream", hits.Load())
	}
}

// An upstream that answers an upload before reading its body (413) is
// heard by the client, as without the stage, instead of a 502 once the
// upload fails.
func TestHTTPModeEarlyAnswerToAnUpload(t *testing.T) {
	upstream := tcpServer(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
		// Close as servers do: after the answer, with what is unread
		// drained, so that no reset overtakes the answer.
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	c, r, _ := httpModeProxy(t, upstream)
	go func() {
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", 64<<20)
		_, _ = c.Write(make([]byte, 64<<20)) // fails once the answer has come
	}()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || string(body) != "too big\n" {
		t.Errorf("answer to the upload: %s %q, want the upstream's 413", resp.Status, body)
	}
}

// A request an http_latency toxic holds is let go as soon as the toxic is
// removed (a rollback), or every toxic is (a halt, /reset), in either
// phase, as the byte-level latency lets its bytes go.
func TestRemovingHTTPLatencyReleasesHeldRequests(t *testing.T) {
	for _, c := range []struct {
		phase     string
		removeAll bool
	}{{"request", false}, {"response", false}, {"response", true}} {
		t.Run(fmt.Sprintf("%s phase, remove all %v", c.phase, c.removeAll), func(t *testing.T) {
			srv, hits := shopAPI(t)
			p := proxytest.New(t, strings.TrimPrefix(srv.URL, "http://"))
			proxytest.AddToxic(t, p, proxy.Toxic{Name: "slow", Effect: proxy.HTTPLatency{Delay: 10 * time.Minute, Phase: c.phase}})
			answered := make(chan error, 1)
			go func() {
				cl := &http.Client{Timeout: time.Minute}
				resp, err := cl.Get("http://" + p.Listen() + "/x")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				answered <- err
			}()
			held := func() bool { // the request matched, and for a response, the upstream answered
				return p.ToxicHits("slow") == 1 && (c.phase == "request" || hits.Load() == 1)
			}
			for deadline := time.Now().Add(10 * time.Second); !held(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the request never reached the toxic")
				}
			}
			select {
			case err := <-answered:
				t.Fatalf("answered while held: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			if c.removeAll {
				p.RemoveAllToxics()
			} else if err := p.RemoveToxic("slow"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-answered:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the request is still held 10 s after its toxic was removed")
			}
		})
	}
}

// garble changes that many distinct bytes, at most every byte once, so the
// work is bounded by the body whatever the attribute says: a garble of
// 1e15 answers at once with every byte changed, and the proxy can be
// deleted at once after it.
func TestHTTPBodyGarbleIsBoundedByTheBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(srv.Close)
	_, api := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	cl := proxy.NewClient(api, "")
	ctx := t.Context()
	for _, c := range []struct {
		garble  int64
		changed int
	}{{1_000_000_000_000_000, len(body)}, {10, 10}, {999, 999}} {
		info, err := cl.CreateProxy(ctx, "g", "127.0.0.1:0", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.AddToxic(ctx, "g", proxy.ToxicInfo{Name: "garble", Type: "http_body", Stream: "downstream", Toxicity: 1,
			Attributes: map[string]any{"garble": c.garble}}); err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Timeout: 10 * time.Second}
		resp, got := do(t, hc, "GET", "http://"+info.Listen+"/")
		changed := 0
		for i := range min(len(got), len(body)) {
			if got[i] != body[i] {
				changed++
			}
		}
		if resp.StatusCode != 200 || len(got) != len(body) || changed != c.changed {
			t.Errorf("garble %d: %s, %d bytes, %d changed; want %d bytes, %d changed", c.garble, resp.Status, len(got), changed, len(body), c.changed)
		}
		deleted := make(chan error, 1)
		go func() { deleted <- cl.DeleteProxy(ctx, "g") }()
		select {
		case err := <-deleted:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("garble %d: deleting the proxy hangs", c.garble)
		}
	}
}
