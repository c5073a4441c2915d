package proxy_test

// Compatibility with Toxiproxy's official Go client, pinned at v2.12.0:
// every endpoint, status code and toxic, driven through the client where it
// reaches them and over raw HTTP where the exact status or body matters.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/google/go-cmp/cmp"

	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
)

// apiServer starts a proxy server's API on loopback for the test.
func apiServer(t *testing.T, opts proxy.ServerOptions) (*proxy.Server, string) {
	t.Helper()
	if opts.Version == "" {
		opts.Version = "git"
	}
	return proxytest.NewServer(t, opts)
}

func officialClient(t *testing.T) (*toxiproxy.Client, *proxy.Server) {
	s, url := apiServer(t, proxy.ServerOptions{Seed: 1})
	return toxiproxy.NewClient(url), s
}

// freePort returns a loopback address nobody listens on (just now).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// call makes a raw API request and returns status and body.
func call(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestOfficialClientVersion(t *testing.T) {
	c, _ := officialClient(t)
	v, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != "{\"version\": \"git\"}\n" {
		t.Fatalf("Version() = %q, want Toxiproxy's exact body", v)
	}
}

func TestOfficialClientProxyLifecycle(t *testing.T) {
	c, _ := officialClient(t)
	up := echoServer(t)
	p, err := c.CreateProxy("echo", "127.0.0.1:0", up)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(p.Listen, ":0") || !p.Enabled {
		t.Fatalf("created proxy = %+v, want a resolved port and enabled", p)
	}
	roundTrip(t, dial(t, p.Listen), []byte("through the proxy"))

	if _, err := c.CreateProxy("echo", "127.0.0.1:0", up); err == nil || err.Error() != "Create: HTTP 409: proxy already exists" {
		t.Fatalf("duplicate CreateProxy error = %v, want Create: HTTP 409: proxy already exists", err)
	}

	all, err := c.Proxies()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all["echo"].Listen != p.Listen || all["echo"].Upstream != up {
		t.Fatalf("Proxies() = %+v", all)
	}

	// Disable: the listener closes and live connections drop.
	live := dial(t, p.Listen)
	roundTrip(t, live, []byte("x"))
	if err := p.Disable(); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Read(make([]byte, 1)); err == nil {
		t.Fatal("a live connection survived Disable")
	}
	if conn, err := net.DialTimeout("tcp", p.Listen, time.Second); err == nil {
		conn.Close()
		t.Fatal("a disabled proxy accepted a connection")
	}
	got, err := c.Proxy("echo")
	if err != nil || got.Enabled {
		t.Fatalf("Proxy() after Disable = %+v, %v", got, err)
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, p.Listen), []byte("back up"))

	if err := p.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Proxy("echo"); err == nil || err.Error() != "HTTP 404: proxy not found" {
		t.Fatalf("Proxy() after Delete: %v, want HTTP 404: proxy not found", err)
	}
	if err := p.Delete(); err == nil || err.Error() != "Delete: HTTP 404: proxy not found" {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestOfficialClientListenFailureIs500WithOSError(t *testing.T) {
	c, _ := officialClient(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = c.CreateProxy("clash", taken.Addr().String(), "127.0.0.1:9")
	want := fmt.Sprintf("Create: HTTP 500: listen tcp %s: bind: address already in use", taken.Addr())
	if err == nil || err.Error() != want {
		t.Fatalf("CreateProxy on a taken port: %v, want %s", err, want)
	}
	if _, err := c.Proxy("clash"); err == nil {
		t.Fatal("a proxy whose listen failed was created")
	}
}

func TestOfficialClientUpdateToSameResolvedAddressKeepsConnections(t *testing.T) {
	c, _ := officialClient(t)
	p, err := c.CreateProxy("echo", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	live := dial(t, p.Listen)
	roundTrip(t, live, []byte("before"))
	_, port, _ := net.SplitHostPort(p.Listen)
	p.Listen = "localhost:" + port
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, live, []byte("after"))
}

func TestOfficialClientPopulate(t *testing.T) {
	c, _ := officialClient(t)
	up := echoServer(t)
	a, b := freePort(t), freePort(t)
	ps, err := c.Populate([]toxiproxy.Proxy{
		{Name: "a", Listen: a, Upstream: up, Enabled: true},
		{Name: "b", Listen: b, Upstream: up, Enabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "a" || ps[1].Name != "b" {
		t.Fatalf("Populate() = %+v", ps)
	}
	pa, _ := c.Proxy("a")
	if _, err := pa.AddToxic("slow", "latency", "", 1, toxiproxy.Attributes{"latency": 10}); err != nil {
		t.Fatal(err)
	}
	// The same again: proxy a is kept as it is, toxic included; b moves.
	b2 := freePort(t)
	if _, err := c.Populate([]toxiproxy.Proxy{
		{Name: "a", Listen: a, Upstream: up, Enabled: true},
		{Name: "b", Listen: b2, Upstream: up, Enabled: true},
	}); err != nil {
		t.Fatal(err)
	}
	pa, _ = c.Proxy("a")
	pb, _ := c.Proxy("b")
	if len(pa.ActiveToxics) != 1 || pb.Listen != b2 {
		t.Fatalf("after second Populate: a = %+v, b = %+v", pa, pb)
	}

	// A missing field anywhere creates nothing.
	_, err = c.Populate([]toxiproxy.Proxy{{Name: "c", Listen: freePort(t), Upstream: up}, {Name: "d", Listen: freePort(t)}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 400: missing required field: upstream at proxy 2") {
		t.Fatalf("Populate with a missing upstream: %v", err)
	}
	if _, err := c.Proxy("c"); err == nil {
		t.Fatal("Populate created a proxy from a list with an invalid entry")
	}

	// A listen failure keeps the entries before it, and stops there.
	taken, _ := net.Listen("tcp", "127.0.0.1:0")
	defer taken.Close()
	_, err = c.Populate([]toxiproxy.Proxy{
		{Name: "e", Listen: freePort(t), Upstream: up, Enabled: true},
		{Name: "f", Listen: taken.Addr().String(), Upstream: up, Enabled: true},
		{Name: "g", Listen: freePort(t), Upstream: up, Enabled: true},
	})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Populate onto a taken port: %v", err)
	}
	if _, err := c.Proxy("e"); err != nil {
		t.Fatalf("entry before the failure: %v", err)
	}
	for _, n := range []string{"f", "g"} {
		if _, err := c.Proxy(n); err == nil {
			t.Fatalf("entry %s, at or after the failure, was created", n)
		}
	}
}

func TestOfficialClientToxics(t *testing.T) {
	c, _ := officialClient(t)
	p, err := c.CreateProxy("echo", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typ    string
		stream string
		attrs  toxiproxy.Attributes
		want   toxiproxy.Attributes // as echoed, every attribute with defaults
	}{
		{"latency", "", toxiproxy.Attributes{"latency": 100, "jitter": 10}, toxiproxy.Attributes{"latency": 100.0, "jitter": 10.0}},
		{"bandwidth", "upstream", toxiproxy.Attributes{"rate": 1000}, toxiproxy.Attributes{"rate": 1000.0}},
		{"slow_close", "downstream", toxiproxy.Attributes{"delay": 50}, toxiproxy.Attributes{"delay": 50.0}},
		{"timeout", "upstream", nil, toxiproxy.Attributes{"timeout": 0.0}},
		{"reset_peer", "upstream", toxiproxy.Attributes{"timeout": 5}, toxiproxy.Attributes{"timeout": 5.0}},
		{"slicer", "downstream", toxiproxy.Attributes{"average_size": 64, "size_variation": 32}, toxiproxy.Attributes{"average_size": 64.0, "size_variation": 32.0, "delay": 0.0}},
		{"limit_data", "downstream", toxiproxy.Attributes{"bytes": 1 << 20, "unknown_key": "ignored"}, toxiproxy.Attributes{"bytes": float64(1 << 20)}},
		{"noop", "upstream", nil, toxiproxy.Attributes{}},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			got, err := p.AddToxic("", tt.typ, tt.stream, -1, tt.attrs)
			if err != nil {
				t.Fatal(err)
			}
			stream := tt.stream
			if stream == "" {
				stream = "downstream"
			}
			want := &toxiproxy.Toxic{Name: tt.typ + "_" + stream, Type: tt.typ, Stream: stream, Toxicity: 1, Attributes: tt.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("AddToxic(%s) mismatch (-want +got):\n%s", tt.typ, diff)
			}
		})
	}
	all, err := p.Toxics()
	if err != nil {
		t.Fatal(err)
	}
	// Upstream toxics first, then downstream, each in the order added.
	var order []string
	for _, tx := range all {
		order = append(order, tx.Name)
	}
	wantOrder := []string{"bandwidth_upstream", "timeout_upstream", "reset_peer_upstream", "noop_upstream",
		"latency_downstream", "slow_close_downstream", "slicer_downstream", "limit_data_downstream"}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("Toxics() order (-want +got):\n%s", diff)
	}
}

func TestOfficialClientToxicErrorsAndUpdates(t *testing.T) {
	c, _ := officialClient(t)
	p, err := c.CreateProxy("echo", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddToxic("lat", "latency", "", 0.5, toxiproxy.Attributes{"latency": 100, "jitter": 5}); err != nil {
		t.Fatal(err)
	}
	// Names are unique across both streams.
	if _, err := p.AddToxic("lat", "latency", "upstream", 1, nil); err == nil || err.Error() != "AddToxic: HTTP 409: toxic already exists" {
		t.Errorf("duplicate name on the other stream: %v", err)
	}
	for _, tt := range []struct {
		name, typ, stream string
		attrs             toxiproxy.Attributes
		want              string
	}{
		{"bad stream", "latency", "sideways", nil, "AddToxic: HTTP 400: stream was invalid, can be either upstream or downstream"},
		{"bad type", "meteor", "", nil, "AddToxic: HTTP 400: invalid toxic type"},
		{"string for int", "latency", "", toxiproxy.Attributes{"latency": "slow"}, "AddToxic: HTTP 400: bad request body"},
		{"negative", "latency", "", toxiproxy.Attributes{"latency": -5}, "AddToxic: HTTP 400: latency must be >= 0"},
		{"negative rate", "bandwidth", "", toxiproxy.Attributes{"rate": -1}, "AddToxic: HTTP 400: rate must be >= 0"},
		{"slicer zero", "slicer", "", toxiproxy.Attributes{"average_size": 0}, "AddToxic: HTTP 400: average_size must be > 0"},
		{"slicer variation", "slicer", "", toxiproxy.Attributes{"average_size": 10, "size_variation": 20}, "AddToxic: HTTP 400: size_variation (20) must not exceed average_size (10)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.AddToxic(tt.name, tt.typ, tt.stream, 1, tt.attrs)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("AddToxic(%s) error = %v, want prefix %q", tt.name, err, tt.want)
			}
		})
	}

	// Update merges attributes and keeps toxicity when -1.
	got, err := p.UpdateToxic("lat", -1, toxiproxy.Attributes{"latency": 200})
	if err != nil {
		t.Fatal(err)
	}
	want := &toxiproxy.Toxic{Name: "lat", Type: "latency", Stream: "downstream", Toxicity: 0.5, Attributes: toxiproxy.Attributes{"latency": 200.0, "jitter": 5.0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UpdateToxic mismatch (-want +got):\n%s", diff)
	}
	if _, err := p.UpdateToxic("lat", 0.25, nil); err != nil {
		t.Fatal(err)
	}
	tx, _ := p.Toxics()
	if tx[0].Toxicity != 0.25 || tx[0].Attributes["latency"] != 200.0 {
		t.Errorf("after toxicity update: %+v", tx[0])
	}
	if _, err := p.UpdateToxic("nope", -1, nil); err == nil || err.Error() != "HTTP 404: toxic not found" {
		t.Errorf("UpdateToxic of a missing toxic: %v", err)
	}
	if err := p.RemoveToxic("lat"); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveToxic("lat"); err == nil || err.Error() != "HTTP 404: toxic not found" {
		t.Errorf("second RemoveToxic: %v", err)
	}
}

func TestOfficialClientResetState(t *testing.T) {
	c, _ := officialClient(t)
	p, err := c.CreateProxy("echo", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddToxic("", "timeout", "", 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Disable(); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetState(); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Proxy("echo")
	if !got.Enabled || len(got.ActiveToxics) != 0 {
		t.Fatalf("after ResetState: %+v, want enabled without toxics", got)
	}
	roundTrip(t, dial(t, got.Listen), []byte("clean"))
}

// TestOfficialClientToxicsOnLiveConnection adds and removes toxics on both
// streams through the API while echoes flow on one connection.
func TestOfficialClientToxicsOnLiveConnection(t *testing.T) {
	c, _ := officialClient(t)
	p, err := c.CreateProxy("echo", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, p.Listen)
	for i := range 100 {
		for _, s := range []string{"upstream", "downstream"} {
			if _, err := p.AddToxic("noop_"+s, "noop", s, 1, nil); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip(t, conn, fmt.Appendf(nil, "message %d", i))
		for _, s := range []string{"upstream", "downstream"} {
			if err := p.RemoveToxic("noop_" + s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestAPIStatusCodes(t *testing.T) {
	_, url := apiServer(t, proxy.ServerOptions{Seed: 1})
	up := echoServer(t)
	steps := []struct {
		method, path, body string
		status             int
		bodyHas            string
	}{
		{"GET", "/proxies", "", 200, "{}"},
		{"POST", "/proxies", `{"name":"p","listen":"127.0.0.1:0","upstream":"` + up + `"}`, 201, `"enabled":true`},
		{"POST", "/proxies", `{"name":"p","listen":"127.0.0.1:0","upstream":"` + up + `"}`, 409, `{"error":"proxy already exists","status":409}`},
		{"POST", "/proxies", `{"name":"q"}`, 400, `{"error":"missing required field: upstream","status":400}`},
		{"POST", "/proxies", `{"upstream":"x:1"}`, 400, `missing required field: name`},
		{"POST", "/proxies", `{not json`, 400, `bad request body`},
		{"POST", "/proxies", `{"name":"r","listen":"nonsense","upstream":"x:1"}`, 500, `missing port in address`},
		{"POST", "/proxies", `{"name":"off","listen":"127.0.0.1:0","upstream":"x:1","enabled":false}`, 201, `"enabled":false`},
		{"GET", "/proxies/p", "", 200, `"name":"p"`},
		{"GET", "/proxies/nope", "", 404, `{"error":"proxy not found","status":404}`},
		{"PATCH", "/proxies/p", `{"enabled":false}`, 200, `"enabled":false`},
		{"POST", "/proxies/p", `{"enabled":true}`, 200, `"enabled":true`},
		{"PATCH", "/proxies/p", `{"listen":"garbage"}`, 500, `missing port in address`},
		{"GET", "/proxies/p/toxics", "", 200, "[]"},
		{"POST", "/proxies/p/toxics", `{"type":"latency","attributes":{"latency":5}}`, 200, `"name":"latency_downstream"`},
		{"POST", "/proxies/p/toxics", `{"type":"latency","stream":"UPSTREAM"}`, 200, `"name":"latency_UPSTREAM","type":"latency","stream":"UPSTREAM"`},
		{"POST", "/proxies/p/toxics", `{"type":"latency","stream":""}`, 400, `stream was invalid`},
		{"POST", "/proxies/p/toxics", `{"type":"latency","toxicity":"high"}`, 400, `bad request body`},
		{"POST", "/proxies/p/toxics", `{"name":"t7","type":"latency","toxicity":7}`, 400, `toxicity must be between 0 and 1`},
		{"POST", "/proxies/p/toxics", `{"type":"noop","attributes":null}`, 200, `"attributes":{}`},
		{"POST", "/proxies/nope/toxics", `{"type":"noop"}`, 404, `proxy not found`},
		{"GET", "/proxies/p/toxics/latency_downstream", "", 200, `{"attributes":{"latency":5,"jitter":0},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1}`},
		{"GET", "/proxies/p/toxics/nope", "", 404, `{"error":"toxic not found","status":404}`},
		{"POST", "/proxies/p/toxics/latency_downstream", `{"attributes":{"jitter":2}}`, 200, `"latency":5,"jitter":2`},
		{"PATCH", "/proxies/p/toxics/latency_downstream", `{"toxicity":0.5}`, 200, `"toxicity":0.5`},
		{"DELETE", "/proxies/p/toxics/latency_downstream", "", 204, ""},
		{"DELETE", "/proxies/p/toxics/latency_downstream", "", 404, "toxic not found"},
		{"POST", "/populate", `{"name":"x"}`, 400, `"proxies":null`},
		{"POST", "/populate", `[{"name":"y","listen":"127.0.0.1:0","upstream":"` + up + `"}]`, 201, `{"proxies":[{"name":"y"`},
		{"POST", "/reset", "", 204, ""},
		{"GET", "/proxies/p/toxics", "", 200, "[]"},
		{"DELETE", "/proxies/p", "", 204, ""},
		{"DELETE", "/proxies/p", "", 404, "proxy not found"},
		{"GET", "/version", "", 200, "{\"version\": \"git\"}\n"},
		{"GET", "/metrics", "", 200, "go_goroutines"},
		{"GET", "/nowhere", "", 404, "404 page not found"},
		{"PUT", "/proxies", "", 405, ""},
	}
	for _, st := range steps {
		status, body := call(t, st.method, url+st.path, st.body)
		if status != st.status || !strings.Contains(body, st.bodyHas) {
			t.Errorf("%s %s %s = %d %q, want %d containing %q", st.method, st.path, st.body, status, body, st.status, st.bodyHas)
		}
		if status >= 400 && status != 404 && status != 405 && strings.HasPrefix(st.path, "/proxies") {
			var e struct {
				Error  string `json:"error"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != status || e.Error == "" {
				t.Errorf("%s %s: error body %q is not {\"error\", \"status\"}", st.method, st.path, body)
			}
		}
	}
}

func TestAPIRefusesBrowsers(t *testing.T) {
	_, url := apiServer(t, proxy.ServerOptions{})
	status, body := call(t, "GET", url+"/proxies", "", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	if status != 403 || body != "User agent not allowed\n" {
		t.Fatalf("browser request = %d %q, want 403", status, body)
	}
}

func TestAPIToken(t *testing.T) {
	_, url := apiServer(t, proxy.ServerOptions{Token: "s3cret"})
	for _, tt := range []struct {
		name   string
		header []string
		want   int
	}{
		{"none", nil, 401},
		{"wrong", []string{"Authorization", "Bearer nope"}, 401},
		{"basic", []string{"Authorization", "Basic czNjcmV0"}, 401},
		{"right", []string{"Authorization", "Bearer s3cret"}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/proxies", "/version", "/metrics"} {
				status, body := call(t, "GET", url+path, "", tt.header...)
				if status != tt.want {
					t.Errorf("GET %s = %d %q, want %d", path, status, body, tt.want)
				}
			}
		})
	}
}

func TestMetricsCountBytesWithToxiproxyNames(t *testing.T) {
	s, url := apiServer(t, proxy.ServerOptions{Seed: 1})
	up := echoServer(t)
	p, err := s.Create(proxy.ProxyConfig{Name: "m", Listen: "127.0.0.1:0", Upstream: up, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Listen())
	roundTrip(t, c, []byte("0123456789"))
	_ = c.CloseWrite()
	_, _ = io.ReadAll(c)
	waitConns(t, p, 0)
	_, body := call(t, "GET", url+"/metrics", "")
	for _, want := range []string{
		fmt.Sprintf(`toxiproxy_proxy_sent_bytes_total{direction="downstream",listener=%q,proxy="m",upstream=%q} 10`, p.Listen(), up),
		fmt.Sprintf(`toxiproxy_proxy_received_bytes_total{direction="upstream",listener=%q,proxy="m",upstream=%q} 10`, p.Listen(), up),
		`faultline_proxy_connections_total{proxy="m"} 1`,
		`faultline_proxy_connections{proxy="m"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// /reset resets every proxy even when one cannot listen again (its port
// taken), then says which failed and why: the proxies after it lose their
// toxics and come back up all the same.
func TestResetResetsEveryProxyThenReportsFailures(t *testing.T) {
	s, url := apiServer(t, proxy.ServerOptions{Seed: 1})
	up := echoServer(t)
	for _, name := range []string{"a", "b", "c"} {
		p, err := s.Create(proxy.ProxyConfig{Name: name, Listen: "127.0.0.1:0", Upstream: up, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AddToxic(proxy.Toxic{Effect: proxy.Latency{Delay: time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.Get("a")
	b, _ := s.Get("b")
	a.Stop()
	b.Stop()
	taken, err := net.Listen("tcp", a.Listen()) // a cannot listen again
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	status, body := call(t, "POST", url+"/reset", "")
	if status != 500 || !strings.Contains(body, "proxy a: listen tcp "+a.Listen()+": bind: address already in use") {
		t.Errorf("reset with a's port taken = %d %s, want a 500 naming a and why", status, body)
	}
	for _, p := range s.List() {
		if n := len(p.Toxics()); n != 0 {
			t.Errorf("proxy %s kept %d toxics", p.Name(), n)
		}
		if want := p.Name() != "a"; p.Enabled() != want {
			t.Errorf("proxy %s enabled = %v, want %v", p.Name(), p.Enabled(), want)
		}
	}
}

// The API's answers carry an X-Toxiproxy-Request-Id, as Toxiproxy's do
// (TestRequestIDLikeToxiproxy compares with Toxiproxy itself).
func TestAPIRequestID(t *testing.T) {
	_, url := apiServer(t, proxy.ServerOptions{Token: "t"})
	for _, path := range []string{"/version", "/proxies"} {
		resp, err := http.Get(url + path) // no token: a 401, with an id all the same
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if id := resp.Header.Get("X-Toxiproxy-Request-Id"); len(id) != 20 {
			t.Errorf("GET %s: %s, request id %q, want 20 characters", path, resp.Status, id)
		}
	}
}
