package proxy_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
)

// scriptedUpstream answers each request by its path from answers, reading
// bodies by their framing, and records every byte it receives; it closes a
// connection after an HTTP/1.0 answer or at the client's end. What is not
// HTTP/1 (an HTTP/2 preface) it reads to the end and answers with h2Answer.
// Each connection's bytes come out on the returned channel once it ends.
func scriptedUpstream(t *testing.T, answers map[string]string, h2Answer string) (string, <-chan []byte) {
	t.Helper()
	got := make(chan []byte, 8)
	addr := tcpServer(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		var rec bytes.Buffer
		defer func() { got <- rec.Bytes() }()
		br := bufio.NewReader(io.TeeReader(c, &rec))
		for {
			req, err := http.ReadRequest(br)
			if err != nil || req.ProtoMajor != 1 {
				if err == nil || !strings.Contains(err.Error(), "EOF") {
					_, _ = io.Copy(io.Discard, br)
					_, _ = io.WriteString(c, h2Answer)
				}
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = io.WriteString(c, answers[req.URL.Path])
			if req.ProtoMinor == 0 {
				return
			}
		}
	})
	return addr, got
}

// exchange sends msg to addr, half-closes, and returns all that comes back
// until the other side closes.
func exchange(t *testing.T, addr, msg string) []byte {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v (so far %q)", err, b)
	}
	return b
}

// The HTTP stage passes on what no toxic touches byte for byte, both ways:
// the upstream receives what it would receive without the proxy, and the
// client gets what the upstream sent. Compared with a direct connection,
// through an HTTP-mode proxy without toxics and through one whose HTTP
// toxics match other paths.
func TestHTTPStagePassesUntouchedMessagesAsTheyAre(t *testing.T) {
	answers := map[string]string{
		"/10": "HTTP/1.0 200 OK\r\nServer:  odd  \r\ncontent-type: text/plain\r\n\r\na body that ends with the connection",
		"/1":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;name=value\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n",
		"/2":  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A:b\r\nX-A: c\r\n\r\ntwo",
		"/up": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
	}
	// The client preface of HTTP/2 with prior knowledge, a SETTINGS frame
	// and a HEADERS frame's bytes; the server's SETTINGS and its ACK.
	h2 := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64" +
		"\x00\x00\x05\x01\x05\x00\x00\x00\x01\x82\x86\x84\x41\x8a"
	h2Answer := "\x00\x00\x00\x04\x00\x00\x00\x00\x00" + "\x00\x00\x00\x04\x01\x00\x00\x00\x00"
	cases := []struct{ name, msg string }{
		{"HTTP/1.0 with Host", "GET /10 HTTP/1.0\r\nHost: shop\r\nAccept: */*\r\n\r\n"},
		{"HTTP/1.0 without Host", "GET /10 HTTP/1.0\r\n\r\n"},
		{"h2c prior knowledge", h2},
		{"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost:a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n"},
		{"chunked upload with trailer, then more", "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n" +
			"3;x=1\r\nabc\r\n0\r\nX-Check: ok\r\n\r\n" + "GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up, got := scriptedUpstream(t, answers, h2Answer)
			direct := exchange(t, up, tc.msg)
			directUp := <-got
			staged := proxy.New(proxy.Config{Name: "bare", Listen: "127.0.0.1:0", Upstream: up, Protocol: "http"})
			if err := staged.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(staged.Stop)
			elsewhere := proxytest.New(t, up)
			proxytest.AddToxic(t, elsewhere, proxy.Toxic{Name: "s", Effect: proxy.HTTPStatus{Status: 503, HTTPMatch: proxy.HTTPMatch{Path: "/never"}}})
			proxytest.AddToxic(t, elsewhere, proxy.Toxic{Name: "h", Effect: proxy.HTTPHeader{Set: map[string]string{"X-Seen": "1"}, HTTPMatch: proxy.HTTPMatch{Path: "/never/*"}}})
			for _, p := range []*proxy.Proxy{staged, elsewhere} {
				back := exchange(t, p.Listen(), tc.msg)
				if upGot := <-got; !bytes.Equal(upGot, directUp) {
					t.Errorf("through %s, the upstream received\n%q\nwithout the proxy\n%q", p.Name(), upGot, directUp)
				}
				if !bytes.Equal(back, direct) {
					t.Errorf("through %s, the client received\n%q\nwithout the proxy\n%q", p.Name(), back, direct)
				}
			}
		})
	}
}

// What a toxic changes is all that changes: a header toxic edits its
// fields and keeps every other byte of the head, the request line and
// HTTP version included.
func TestHTTPHeaderToxicEditsOnlyItsFields(t *testing.T) {
	up, got := scriptedUpstream(t, map[string]string{"/": "HTTP/1.0 200 OK\r\nServer: s\r\nX-Drop: gone\r\n\r\nbody"}, "")
	p := proxytest.New(t, up)
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "req", Effect: proxy.HTTPHeader{Phase: "request", Drop: []string{"x-trace"}, Set: map[string]string{"Host": "other"}}})
	proxytest.AddToxic(t, p, proxy.Toxic{Name: "resp", Effect: proxy.HTTPHeader{Drop: []string{"X-Drop"}, Add: map[string]string{"X-Added": "1"}}})
	back := exchange(t, p.Listen(), "GET / HTTP/1.0\r\nhost: shop\r\nX-Trace: 1\r\n  folded\r\nAccept:*/*\r\n\r\n")
	if want := "GET / HTTP/1.0\r\nAccept:*/*\r\nHost: other\r\n\r\n"; string(<-got) != want {
		t.Errorf("upstream received a request other than %q", want)
	}
	if want := "HTTP/1.0 200 OK\r\nServer: s\r\nX-Added: 1\r\n\r\nbody"; string(back) != want {
		t.Errorf("client received %q, want %q", back, want)
	}
}

// Headers are capped as net/http caps them: a request whose head passes 1
// MiB gets a 431 and never reaches the upstream, a response whose head
// does gets the client a 502; a head just under the cap passes.
func TestHTTPStageCapsHeaders(t *testing.T) {
	big := strings.Repeat("a", 2<<20)
	up, got := scriptedUpstream(t, map[string]string{
		"/":    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/big": "HTTP/1.1 200 OK\r\nX-Big: " + big + "\r\nContent-Length: 0\r\n\r\n",
	}, "")
	_, _, p := httpModeProxy(t, up)
	status := func(msg string, more bool) string {
		c := dial(t, p.Listen())
		go func() {
			_, _ = io.WriteString(c, msg)
			if more { // a client that keeps sending its endless header line
				for range 64 {
					if _, err := io.WriteString(c, big); err != nil {
						return
					}
				}
			}
		}()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		c.Close()
		return strings.TrimSpace(line)
	}
	if s := status("GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+big, true); s != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Errorf("a request with 2 MiB of headers and more: %q, want 431", s)
	}
	if b := <-got; len(b) != 0 {
		t.Errorf("the upstream received %d bytes of a refused request", len(b))
	}
	if s := status("GET / HTTP/1.1\r\nHost: a\r\nX-Near: "+big[:1<<20-100]+"\r\nConnection: close\r\n\r\n", false); s != "HTTP/1.1 200 OK" {
		t.Errorf("a request with just under 1 MiB of headers: %q, want 200", s)
	}
	<-got
	if s := status("GET /big HTTP/1.1\r\nHost: a\r\n\r\n", false); s != "HTTP/1.1 502 Bad Gateway" {
		t.Errorf("a response with 2 MiB of headers: %q, want 502", s)
	}
}
