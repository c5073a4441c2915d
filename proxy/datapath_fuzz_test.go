package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/proxy"
)

// toxicBodies are the toxics FuzzToxicsOnRealBytes adds, by the kind it
// draws, with the attributes it fills from three numbers, and whether the
// toxic lets every byte through once removed (the others drop or end).
var toxicBodies = []struct {
	typ, attrs string
	lossless   bool
}{
	{"latency", `{"latency":$a,"jitter":$b}`, true},
	{"bandwidth", `{"rate":$a}`, true},
	{"slow_close", `{"delay":$a}`, true},
	{"slicer", `{"average_size":$a,"size_variation":$b,"delay":$c}`, true},
	{"noop", `{}`, true},
	{"timeout", `{"timeout":$a}`, false},
	{"reset_peer", `{"timeout":$a}`, false},
	{"limit_data", `{"bytes":$a}`, false},
}

// FuzzToxicsOnRealBytes runs real bytes through a proxy whose toxics have
// any attribute values, the extremes included: the API takes or refuses
// each toxic, and the data path neither panics nor hangs nor corrupts.
// Once the toxics are removed, what they held arrives in order (all of it,
// for the toxics that drop nothing), and the proxy keeps serving.
func FuzzToxicsOnRealBytes(f *testing.F) {
	const maxI64 = math.MaxInt64
	for _, s := range []struct {
		kinds   uint8
		a, b, c int64
		bulk    bool
	}{
		{1, 100000000000000000, 0, 0, false},        // bandwidth: 100*rate overflowed
		{1, maxI64, 0, 0, true},                     // and through the bulk path
		{1, 1, 0, 0, true},                          // 1 KB/s: held until removed
		{1, 0, 0, 0, false},                         // rate 0 holds everything
		{0, 9223372036854, 9223372036854, 0, false}, // the longest latency and jitter
		{0, 1 << 62, 0, 0, false},                   // too long: refused
		{0, 0, maxI64, 0, true},
		{3, 1, 0, maxI64, true},  // 1-byte slices, delay too long
		{3, 1, 0, 1 << 40, true}, // 1-byte slices, 12 days apart
		{3, maxI64, maxI64, 0, false},
		{1<<6 | 3<<3, 1, 1, 1, true}, // latency, then a slicer on the other stream
		{2, maxI64, 0, 0, false},
		{5, 9223372036854, 0, 0, false},
		{6, 9223372036854, 0, 0, false},
		{7, maxI64, 0, 0, true},
		{7, 0, 0, 0, false},
		{1<<6 | 4<<3 | 1, -1, -5, -7, false}, // refused, then a noop
	} {
		f.Add(s.kinds, s.a, s.b, s.c, s.bulk, []byte("ping\n"))
	}
	srv := proxy.NewServer(proxy.ServerOptions{Seed: 1})
	defer srv.Close()
	up := echoServer(f)
	p, err := srv.Create(proxy.ProxyConfig{Name: "p", Listen: "127.0.0.1:0", Upstream: up, Enabled: true})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	api := func(method, path, body string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec.Code
	}
	f.Fuzz(func(t *testing.T, kinds uint8, a, b, c int64, bulk bool, data []byte) {
		if len(data) == 0 || len(data) > 64<<10 {
			return
		}
		if bulk { // more than a chunk waiting: the splice and bulk paths
			data = bytes.Repeat(data, (600<<10)/len(data)+1)
		}
		lossless := true
		var names []string
		for i, k := range []uint8{kinds & 7, kinds >> 3 & 7} {
			if i == 1 && kinds>>6 == 0 {
				break // one toxic unless the top bits ask for two
			}
			tb := toxicBodies[k]
			name := fmt.Sprintf("t%d", i)
			stream := []string{"downstream", "upstream"}[(kinds>>6+uint8(i))&1]
			attrs := strings.NewReplacer("$a", fmt.Sprint(a), "$b", fmt.Sprint(b), "$c", fmt.Sprint(c)).Replace(tb.attrs)
			body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"attributes":%s}`, name, tb.typ, stream, attrs)
			code := api(http.MethodPost, "/proxies/p/toxics", body)
			switch code {
			case http.StatusOK:
				names = append(names, name)
				lossless = lossless && tb.lossless
			case http.StatusBadRequest:
			default:
				t.Fatalf("add %s: status %d", body, code)
			}
		}
		conn, err := net.DialTimeout("tcp", p.Listen(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		writeErr := make(chan error, 1)
		go func() {
			_ = conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			_, err := conn.Write(data)
			writeErr <- err
		}()
		// What gets through the toxics soon, then the rest once removed.
		got := make([]byte, 0, len(data))
		buf := make([]byte, 64<<10)
		readFor := func(d time.Duration) error {
			_ = conn.SetReadDeadline(time.Now().Add(d))
			for len(got) < len(data) {
				n, err := conn.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					return err
				}
			}
			return nil
		}
		err = readFor(50 * time.Millisecond)
		for _, n := range names {
			if code := api(http.MethodDelete, "/proxies/p/toxics/"+n, ""); code != http.StatusNoContent {
				t.Fatalf("remove %s: status %d", n, code)
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = readFor(20 * time.Second)
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("%d bytes came back that are not what was sent (%d bytes)", len(got), len(data))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the proxy hung: %d of %d bytes back 20 s after the toxics were removed", len(got), len(data))
		}
		if lossless && len(got) != len(data) {
			t.Fatalf("%d of %d bytes back through toxics that drop nothing (%v)", len(got), len(data), err)
		}
		conn.Close()
		if werr := <-writeErr; lossless && werr != nil {
			t.Fatalf("write: %v", werr)
		}
		if n := p.Panics(); n != 0 {
			t.Fatalf("%d panics in the data path", n)
		}
		// The proxy still serves.
		roundTrip(t, dial(t, p.Listen()), []byte("still there"))
	})
}

// Attribute values too large for what they mean are refused with a 400
// that says the bound; values that are only large are taken and act as
// their meaning says (a rate beyond any link is no limit), and neither
// stops the data path.
func TestExtremeAttributeValues(t *testing.T) {
	s, url := apiServer(t, proxy.ServerOptions{Seed: 1})
	up := echoServer(t)
	p, err := s.Create(proxy.ProxyConfig{Name: "p", Listen: "127.0.0.1:0", Upstream: up, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body, want string
		status     int
	}{
		{`{"type":"bandwidth","attributes":{"rate":100000000000000000}}`, `"rate":100000000000000000`, 200},
		{`{"type":"bandwidth","stream":"upstream","attributes":{"rate":9223372036854775807}}`, `"rate":9223372036854775807`, 200},
		{`{"type":"latency","attributes":{"latency":100000000000000000}}`, "latency must be at most 9223372036854 ms (292 years), got 100000000000000000", 400},
		{`{"type":"latency","attributes":{"jitter":9223372036855}}`, "jitter must be at most 9223372036854 ms", 400},
		{`{"type":"slow_close","attributes":{"delay":9223372036855}}`, "delay must be at most", 400},
		{`{"type":"timeout","attributes":{"timeout":9223372036855}}`, "timeout must be at most", 400},
		{`{"type":"reset_peer","attributes":{"timeout":9223372036855}}`, "timeout must be at most", 400},
		{`{"type":"slicer","attributes":{"average_size":1,"delay":9223372036854776}}`, "delay must be at most 9223372036854775 µs", 400},
		{`{"type":"http_latency","attributes":{"latency":9223372036855}}`, "latency must be at most", 400},
		{`{"name":"long","type":"latency","stream":"upstream","attributes":{"latency":9223372036854,"jitter":9223372036854}}`, `"latency":9223372036854,"jitter":9223372036854`, 200},
	} {
		status, body := call(t, "POST", url+"/proxies/p/toxics", c.body)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("POST %s = %d %s, want %d with %q", c.body, status, body, c.status, c.want)
		}
	}
	// The longest latency and jitter hold the bytes; removing it lets them go at once.
	// With the two bandwidths, every byte passes.
	conn := dial(t, p.Listen())
	if _, err := conn.Write([]byte("through")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b := make([]byte, len("through"))
		_, err := io.ReadFull(conn, b)
		got <- fmt.Sprint(string(b), err)
	}()
	select {
	case g := <-got:
		t.Fatalf("read %q through a latency of 292 years", g)
	case <-time.After(100 * time.Millisecond):
	}
	if err := p.RemoveToxic("long"); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "through<nil>" {
		t.Fatalf("after the latency was removed: %q", g)
	}
	roundTrip(t, conn, bytes.Repeat([]byte("big"), 1<<20))
	if n := p.Panics(); n != 0 {
		t.Errorf("%d panics", n)
	}
}
