package probe_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Each kind passes on what it expects and fails, saying why, on what it
// does not; a probe that cannot be carried out is an error.
func TestKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"queued":0,"lost":0}`)
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	p := probe.New(probe.Config{})
	defer p.Close()
	cases := []struct {
		name   string
		spec   probe.Spec
		passed bool
		detail string // in Detail, or in the error when err
		err    bool
	}{
		{"http ok", probe.Spec{Kind: "http", Method: "GET", URL: srv.URL + "/", Expect: "200", Body: `"lost":0`}, true, "status 200", false},
		{"http status", probe.Spec{Kind: "http", Method: "GET", URL: srv.URL + "/down", Expect: "200"}, false, "status 503, want 200", false},
		{"http body", probe.Spec{Kind: "http", Method: "GET", URL: srv.URL + "/", Expect: "200", Body: `"lost":1`}, false, "body does not match", false},
		{"tcp ok", probe.Spec{Kind: "tcp", Address: srv.Listener.Addr().String()}, true, "connected", false},
		{"tcp refused", probe.Spec{Kind: "tcp", Address: closed}, false, "refused", true},
		{"command ok", probe.Spec{Kind: "command", Command: []string{"true"}, Expect: "0"}, true, "exit status 0", false},
		{"command says why", probe.Spec{Kind: "command", Command: []string{"sh", "-c", "echo no database >&2; exit 3"}, Expect: "0"}, false, "exit status 3: no database", false},
		{"command missing", probe.Spec{Kind: "command", Command: []string{"/no/such/command"}, Expect: "0"}, false, "no such file", true},
		{"ready_pods without a cluster", probe.Spec{Kind: "ready_pods", Selector: "app=x", Expect: ">= 0.5"}, false, "no Kubernetes client", true},
		{"unknown kind", probe.Spec{Kind: "smoke"}, false, `no kind of probe "smoke"`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := p.Run(context.Background(), &c.spec)
			got := res.Detail
			if err != nil {
				got = err.Error()
			}
			if (err != nil) != c.err || res.Passed != c.passed || !strings.Contains(got, c.detail) {
				t.Fatalf("Run(%s) = %+v, %v; want passed %v, error %v, saying %q", c.spec.Text(), res, err, c.passed, c.err, c.detail)
			}
		})
	}
}

// A kind registered from outside runs as the built-in ones do.
func TestRegister(t *testing.T) {
	p := probe.New(probe.Config{})
	p.Register("flag", func(_ context.Context, _ *probe.Prober, s *probe.Spec) (probe.Result, error) {
		return probe.Result{Passed: s.Args["name"] == "on", Detail: "flag " + s.Args["name"]}, nil
	})
	res, err := p.Run(context.Background(), &probe.Spec{Kind: "flag", Args: map[string]string{"name": "on"}})
	if err != nil || !res.Passed || res.Detail != "flag on" {
		t.Fatalf("Run(flag) = %+v, %v", res, err)
	}
}
