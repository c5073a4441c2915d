package proxy_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// A connection that does not speak HTTP passes through an HTTP-mode proxy
// unchanged, and is counted.
func TestHTTPModePassesOtherProtocols(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p := proxy.New(proxy.Config{Name: "redis", Listen: "127.0.0.1:0", Upstream: echo.Addr().String(), Protocol: "http"})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c, err := net.Dial("tcp", p.Listen())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "*1\r\n$4\r\nPING\r\n"
	fmt.Fprint(c, msg)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
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
