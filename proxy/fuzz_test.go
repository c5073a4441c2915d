package proxy_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/faultline/faultline/proxy"
)

// FuzzAPIToxicJSON sends arbitrary bodies to the toxic endpoints: the API
// must answer 200, 400 or 409 with a well-formed body, and never panic.
func FuzzAPIToxicJSON(f *testing.F) {
	for _, seed := range []string{
		`{"type":"latency","attributes":{"latency":100,"jitter":10}}`,
		`{"name":"x","type":"slicer","stream":"upstream","toxicity":0.5,"attributes":{"average_size":10,"size_variation":5,"delay":100}}`,
		`{"type":"bandwidth","attributes":{"rate":-1}}`,
		`{"type":"limit_data","attributes":{"bytes":1e30}}`,
		`{"type":"timeout","attributes":null}`,
		`{"type":"noop","toxicity":"x"}`,
		`[]`, `null`, `{`, `{"type":"latency","attributes":{"latency":9223372036854775807}}`,
	} {
		f.Add(seed, `{"attributes":{"latency":5}}`)
	}
	s := proxy.NewServer(proxy.ServerOptions{Seed: 1})
	defer s.Close()
	if _, err := s.Create(proxy.ProxyConfig{Name: "p", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:9"}); err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, add, update string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/proxies/p/toxics", strings.NewReader(add)))
		checkAnswer(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusConflict)
		if rec.Code != http.StatusOK {
			return
		}
		var tx struct{ Name string }
		if err := json.Unmarshal(rec.Body.Bytes(), &tx); err != nil {
			t.Fatalf("200 with a body that is not a toxic: %q", rec.Body)
		}
		path := "/proxies/p/toxics/" + urlPathEscape(tx.Name)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPatch, path, strings.NewReader(update)))
		checkAnswer(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusNotFound)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, path, nil))
		checkAnswer(t, rec, http.StatusNoContent, http.StatusNotFound)
	})
}

func urlPathEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "/", "%2F", "?", "%3F", "#", "%23", " ", "%20")
	return r.Replace(s)
}

func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	ok := false
	for _, a := range allowed {
		ok = ok || rec.Code == a
	}
	if !ok {
		t.Fatalf("status %d (%q), want one of %v", rec.Code, rec.Body, allowed)
	}
	if rec.Code >= 400 && rec.Code != http.StatusNotFound || rec.Code == http.StatusNotFound && strings.HasPrefix(rec.Body.String(), "{") {
		var e struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Status != rec.Code || e.Error == "" {
			t.Fatalf("error body %q is not {\"error\", \"status\"}", rec.Body)
		}
	}
}

// FuzzAPIProxyJSON feeds arbitrary bytes to the parser of proxy lists
// (POST /populate, serve --config): an error or valid configs, no panic.
func FuzzAPIProxyJSON(f *testing.F) {
	for _, seed := range []string{
		`[{"name":"a","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}]`,
		`[{"name":"a","upstream":"x:1","enabled":false},{"name":"b"}]`,
		`{"name":"a"}`, `[`, `[null]`, `[{"enabled":"yes"}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := proxy.DecodeProxyConfigs(data)
		if err != nil {
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if !errors.Is(err, proxy.ErrInvalid) && !errors.As(err, &se) && !errors.As(err, &te) && !strings.Contains(err.Error(), "json") && !strings.Contains(err.Error(), "EOF") {
				t.Fatalf("unexpected kind of error: %v", err)
			}
			return
		}
		for i, c := range cs {
			if c.Name == "" || c.Upstream == "" {
				t.Fatalf("config %d accepted without name or upstream: %+v", i, c)
			}
		}
	})
}
