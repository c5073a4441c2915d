package load

import (
	"testing"
	"time"
)

// The event loops take a run whose every request is plain HTTP to an IP
// address; a run with TLS, a name to resolve or another kind goes to the
// goroutine workers.
func TestLoopsTakePlainHTTPToAnAddress(t *testing.T) {
	for _, c := range []struct {
		reqs []Request
		want bool
	}{
		{[]Request{{URL: "http://127.0.0.1:8080/"}}, true},
		{[]Request{{URL: "http://[::1]:8080/x"}, {Method: "POST", URL: "http://127.0.0.2/"}}, true},
		{[]Request{{URL: "https://127.0.0.1:8443/"}}, false},
		{[]Request{{URL: "http://localhost:8080/"}}, false},
		{[]Request{{URL: "http://127.0.0.1:8080/"}, {TCP: &TCP{Addr: "127.0.0.1:9"}}}, false},
	} {
		ds, err := newDoers(c.reqs, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ls := newLoops(&engine{doers: ds.doers, max: 8})
		if got := ls != nil; got != c.want {
			t.Errorf("%+v: event loops %v, want %v", c.reqs, got, c.want)
		}
		if ls != nil {
			ls.close()
		}
		ds.close()
	}
}
