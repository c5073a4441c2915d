package proxy_test

// Differential tests against the real Toxiproxy 2.12.0 server: the same
// requests to both servers must get the same status codes and bodies,
// except where faultline differs on purpose (see proxytest.Toxiproxy).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
)

var (
	portRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	// Go type names in decoding errors differ by implementation.
	typeRE = regexp.MustCompile(`(cannot unmarshal \w+ into) .*`)
)

// normalize decodes a JSON body, drops Toxiproxy's stray "Logger" field and
// replaces addresses, which differ between the two servers by nature.
func normalize(body string) any {
	body = portRE.ReplaceAllString(body, "127.0.0.1:PORT")
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return strings.TrimSpace(body)
	}
	var strip func(any)
	strip = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			delete(x, "Logger")
			if e, ok := x["error"].(string); ok {
				x["error"] = typeRE.ReplaceAllString(e, "$1 TYPE")
			}
			for _, y := range x {
				strip(y)
			}
		case []any:
			for _, y := range x {
				strip(y)
			}
		}
	}
	strip(v)
	return v
}

func TestSameAnswersAsToxiproxy(t *testing.T) {
	theirs := proxytest.Toxiproxy(t)
	_, ours := apiServer(t, proxy.ServerOptions{Seed: 1})
	up := echoServer(t)
	steps := []struct{ method, path, body string }{
		{"GET", "/version", ""},
		{"GET", "/proxies", ""},
		{"POST", "/proxies", `{"name":"a","listen":"127.0.0.1:0","upstream":"` + up + `"}`},
		{"POST", "/proxies", `{"name":"a","listen":"127.0.0.1:0","upstream":"` + up + `"}`},
		{"POST", "/proxies", `{"name":"b"}`},
		{"POST", "/proxies", `{"upstream":"x:1"}`},
		{"POST", "/proxies", `{"name":"c","listen":"127.0.0.1:0","upstream":"x:1","enabled":false}`},
		{"POST", "/proxies", `{"name":"d","listen":"nonsense","upstream":"x:1"}`},
		{"GET", "/proxies/a", ""},
		{"GET", "/proxies/zz", ""},
		{"POST", "/proxies/a", `{"enabled":false}`},
		{"PATCH", "/proxies/a", `{"enabled":true}`},
		{"PATCH", "/proxies/a", `{"listen":"garbage"}`},
		{"POST", "/proxies/c/toxics", `{"type":"latency","attributes":{"latency":100,"jitter":10}}`},
		{"POST", "/proxies/c/toxics", `{"type":"latency","stream":"upstream"}`},
		{"POST", "/proxies/c/toxics", `{"name":"latency_downstream","type":"noop","stream":"upstream"}`},
		{"POST", "/proxies/c/toxics", `{"type":"bandwidth","stream":"Upstream","attributes":{"rate":10}}`},
		{"POST", "/proxies/c/toxics", `{"type":"slow_close","attributes":{"delay":5,"extra":1}}`},
		{"POST", "/proxies/c/toxics", `{"type":"timeout","stream":"upstream","toxicity":0.5}`},
		{"POST", "/proxies/c/toxics", `{"name":"rp","type":"reset_peer","attributes":{"timeout":3}}`},
		{"POST", "/proxies/c/toxics", `{"type":"slicer","attributes":{"average_size":64}}`},
		{"POST", "/proxies/c/toxics", `{"type":"limit_data","attributes":{"bytes":100}}`},
		{"POST", "/proxies/c/toxics", `{"name":"n","type":"noop","attributes":null}`},
		{"POST", "/proxies/c/toxics", `{"type":"meteor"}`},
		{"POST", "/proxies/c/toxics", `{"name":"s","type":"latency","attributes":{"latency":"slow"}}`},
		{"POST", "/proxies/c/toxics", `{"name":"s","type":"latency","toxicity":"high"}`},
		{"POST", "/proxies/c/toxics", `not json`},
		{"POST", "/proxies/c/toxics", `{"type":"latency","stream":"sideways"}`},
		{"POST", "/proxies/c/toxics", `{"type":"latency","stream":""}`},
		{"POST", "/proxies/zz/toxics", `{"type":"noop"}`},
		{"GET", "/proxies/c/toxics", ""},
		{"GET", "/proxies/c", ""},
		{"GET", "/proxies/c/toxics/latency_downstream", ""},
		{"GET", "/proxies/c/toxics/zz", ""},
		{"PATCH", "/proxies/c/toxics/latency_downstream", `{"attributes":{"jitter":20}}`},
		{"POST", "/proxies/c/toxics/latency_downstream", `{"toxicity":0.25,"name":"ignored","type":"ignored"}`},
		{"PATCH", "/proxies/c/toxics/zz", `{}`},
		{"DELETE", "/proxies/c/toxics/rp", ""},
		{"DELETE", "/proxies/c/toxics/rp", ""},
		{"POST", "/populate", `[{"name":"p1","listen":"127.0.0.1:0","upstream":"` + up + `"},{"name":"p2","listen":"127.0.0.1:0","upstream":"x:1","enabled":false}]`},
		{"POST", "/populate", `[{"name":"p3","listen":"127.0.0.1:0","upstream":"x:1"},{"name":"p4"}]`},
		{"POST", "/populate", `{"name":"x"}`},
		{"POST", "/reset", ""},
		{"GET", "/proxies", ""},
		{"DELETE", "/proxies/a", ""},
		{"DELETE", "/proxies/a", ""},
		{"GET", "/nowhere", ""},
	}
	for i, st := range steps {
		t.Run(fmt.Sprintf("%02d %s %s", i, st.method, st.path), func(t *testing.T) {
			ts, tb := call(t, st.method, theirs+st.path, st.body, "Content-Type", "application/json")
			os, ob := call(t, st.method, ours+st.path, st.body, "Content-Type", "application/json")
			if ts != os {
				t.Errorf("%s %s %s: status %d, Toxiproxy %d (%s)", st.method, st.path, st.body, os, ts, tb)
			}
			if diff := cmp.Diff(normalize(tb), normalize(ob)); diff != "" {
				t.Errorf("%s %s %s: body differs (-Toxiproxy +faultline):\n%s", st.method, st.path, st.body, diff)
			}
		})
	}
}

// Every answer of a route the API has carries a request id in Toxiproxy's
// form (20 characters of base32hex), a new one each time, where Toxiproxy
// sends one; the 404 of an unknown path and a 405 have none, as there.
func TestRequestIDLikeToxiproxy(t *testing.T) {
	theirs := proxytest.Toxiproxy(t)
	_, ours := apiServer(t, proxy.ServerOptions{Seed: 1})
	idRE := regexp.MustCompile(`^[0-9a-v]{20}$`)
	seen := map[string]bool{}
	for _, st := range []struct{ method, path, ua string }{
		{"GET", "/version", ""},
		{"GET", "/proxies", ""},
		{"GET", "/proxies", ""},
		{"POST", "/proxies", ""},
		{"GET", "/proxies/nope", ""},
		{"DELETE", "/proxies/nope/toxics/x", ""},
		{"POST", "/reset", ""},
		{"GET", "/proxies", "Mozilla/5.0"},
		{"GET", "/nowhere", ""},
		{"PUT", "/proxies", ""},
	} {
		ids := map[string]string{}
		for who, base := range map[string]string{"toxiproxy": theirs, "faultline": ours} {
			req, _ := http.NewRequest(st.method, base+st.path, strings.NewReader("{"))
			if st.ua != "" {
				req.Header.Set("User-Agent", st.ua)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			ids[who] = resp.Header.Get("X-Toxiproxy-Request-Id")
		}
		if (ids["toxiproxy"] == "") != (ids["faultline"] == "") {
			t.Errorf("%s %s (%q): request id %q, Toxiproxy's %q", st.method, st.path, st.ua, ids["faultline"], ids["toxiproxy"])
		}
		if id := ids["faultline"]; id != "" {
			if !idRE.MatchString(id) || seen[id] {
				t.Errorf("%s %s: request id %q: not 20 base32hex characters, or seen before", st.method, st.path, id)
			}
			seen[id] = true
		}
	}
}
