package proxy

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
)

// HTTP toxics act on whole HTTP/1.1 requests and responses instead of
// bytes. A proxy that has one (or was created with Protocol "http") reads
// the HTTP of each new connection: requests are matched by Method and Path
// (a glob, as path.Match: "/orders/*"), a toxic's toxicity is drawn per
// request, and rewritten messages get a correct Content-Length. A stream
// that is not HTTP passes through unchanged and is counted.

// HTTPMatch selects requests: an empty Method or Path matches any.
type HTTPMatch struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

func (m HTTPMatch) matches(method, p string) bool {
	if m.Method != "" && !strings.EqualFold(m.Method, method) {
		return false
	}
	if m.Path == "" {
		return true
	}
	ok, _ := path.Match(m.Path, p)
	return ok || strings.HasSuffix(m.Path, "/*") && strings.HasPrefix(p, strings.TrimSuffix(m.Path, "*"))
}

func (m HTTPMatch) validate() error {
	if _, err := path.Match(m.Path, "/"); err != nil {
		return invalidf("path %q: %v", m.Path, err)
	}
	return nil
}

// HTTPStatus answers matched requests itself with Status (and Body, and a
// Retry-After of RetryAfter seconds when set) instead of forwarding them:
// every one, only the First N, or every Every-th.
type HTTPStatus struct {
	HTTPMatch
	Status     int
	Body       string
	RetryAfter int
	First      int
	Every      int
}

// HTTPLatency delays whole matched requests (Phase "request", before
// forwarding) or responses (Phase "response", the default) by Delay ±
// Jitter.
type HTTPLatency struct {
	HTTPMatch
	Delay, Jitter time.Duration
	Phase         string
}

// HTTPBody rewrites the bodies of matched responses: JSON edits at paths
// such as "$.payment.status" or "$.items[*].price" (Null sets the value to
// null, Drop removes the field, Rename gives it a new name, Retype turns a
// string into a number or a number into a string), then Garble changes
// that many distinct bytes (every byte, once, when it is the body's length
// or more), then Truncate keeps only that many bytes (negative: all).
type HTTPBody struct {
	HTTPMatch
	Null, Drop, Retype []string
	Rename             map[string]string
	Garble             int
	Truncate           int
}

// HTTPHeader changes the headers of matched requests (Phase "request") or
// responses (Phase "response", the default): Drop removes, Set replaces,
// Add appends.
type HTTPHeader struct {
	HTTPMatch
	Phase    string
	Drop     []string
	Set, Add map[string]string
}

func (HTTPStatus) Type() string  { return "http_status" }
func (HTTPLatency) Type() string { return "http_latency" }
func (HTTPBody) Type() string    { return "http_body" }
func (HTTPHeader) Type() string  { return "http_header" }

// isHTTP reports whether an effect acts on HTTP messages, not bytes.
func isHTTP(e Effect) bool {
	switch e.(type) {
	case HTTPStatus, HTTPLatency, HTTPBody, HTTPHeader:
		return true
	}
	return false
}

func validPhase(p string) error {
	if p != "" && p != "request" && p != "response" {
		return invalidf("phase must be request or response, got %q", p)
	}
	return nil
}

func (e HTTPStatus) validate() error {
	if e.Status < 100 || e.Status > 599 {
		return invalidf("status must be an HTTP status (100-599), got %d", e.Status)
	}
	if e.RetryAfter < 0 || e.First < 0 || e.Every < 0 {
		return invalidf("retry_after, first and every must be >= 0")
	}
	if e.First > 0 && e.Every > 0 {
		return invalidf("first and every are alternatives: give one of them (first: the first N matched requests; every: every Nth)")
	}
	return e.HTTPMatch.validate()
}

func (e HTTPLatency) validate() error {
	if e.Delay < 0 || e.Jitter < 0 {
		return invalidf("latency and jitter must be >= 0")
	}
	if err := validPhase(e.Phase); err != nil {
		return err
	}
	return e.HTTPMatch.validate()
}

func (e HTTPBody) validate() error {
	if e.Garble < 0 {
		return invalidf("garble must be >= 0, got %d", e.Garble)
	}
	var paths []string
	paths = append(append(append(paths, e.Null...), e.Drop...), e.Retype...)
	for p := range e.Rename {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if _, err := parseJSONPath(p); err != nil {
			return invalidf("%v", err)
		}
	}
	return e.HTTPMatch.validate()
}

func (e HTTPHeader) validate() error {
	if err := validPhase(e.Phase); err != nil {
		return err
	}
	return e.HTTPMatch.validate()
}

// stringList is a JSON list of strings that also takes one string with
// commas, as a command line gives it.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*l = append(*l, p)
			}
		}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("want a list of strings or one string with commas")
	}
	*l = list
	return nil
}

// stringMap is a JSON object of strings that also takes "K=V,K=V".
type stringMap map[string]string

func (m *stringMap) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*m = stringMap{}
		for _, kv := range strings.Split(s, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				(*m)[strings.TrimSpace(k)] = strings.TrimSpace(v)
			} else if strings.TrimSpace(kv) != "" {
				return fmt.Errorf("%q: want KEY=VALUE", kv)
			}
		}
		return nil
	}
	var obj map[string]string
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("want an object of strings or \"KEY=VALUE,...\"")
	}
	*m = obj
	return nil
}

type (
	httpStatusWire struct {
		Method     string `json:"method"`
		Path       string `json:"path"`
		Status     int    `json:"status"`
		Body       string `json:"body"`
		RetryAfter int    `json:"retry_after"`
		First      int    `json:"first"`
		Every      int    `json:"every"`
	}
	httpLatencyWire struct {
		Method  string `json:"method"`
		Path    string `json:"path"`
		Latency int64  `json:"latency"`
		Jitter  int64  `json:"jitter"`
		Phase   string `json:"phase"`
	}
	httpBodyWire struct {
		Method   string     `json:"method"`
		Path     string     `json:"path"`
		Null     stringList `json:"null,omitempty"`
		Drop     stringList `json:"drop,omitempty"`
		Rename   stringMap  `json:"rename,omitempty"`
		Retype   stringList `json:"retype,omitempty"`
		Garble   int        `json:"garble"`
		Truncate int        `json:"truncate"`
	}
	httpHeaderWire struct {
		Method string     `json:"method"`
		Path   string     `json:"path"`
		Phase  string     `json:"phase"`
		Drop   stringList `json:"drop,omitempty"`
		Set    stringMap  `json:"set,omitempty"`
		Add    stringMap  `json:"add,omitempty"`
	}
)

func (e HTTPStatus) wire() any {
	return &httpStatusWire{e.Method, e.Path, e.Status, e.Body, e.RetryAfter, e.First, e.Every}
}
func (e HTTPLatency) wire() any {
	return &httpLatencyWire{e.Method, e.Path, e.Delay.Milliseconds(), e.Jitter.Milliseconds(), e.Phase}
}
func (e HTTPBody) wire() any {
	return &httpBodyWire{e.Method, e.Path, e.Null, e.Drop, e.Rename, e.Retype, e.Garble, e.Truncate}
}
func (e HTTPHeader) wire() any {
	return &httpHeaderWire{e.Method, e.Path, e.Phase, e.Drop, e.Set, e.Add}
}

// fromHTTPWire turns decoded HTTP attributes into an effect; ok is false
// for a wire form that is not an HTTP toxic's.
func fromHTTPWire(w any) (Effect, bool) {
	switch w := w.(type) {
	case *httpStatusWire:
		return HTTPStatus{HTTPMatch{w.Method, w.Path}, w.Status, w.Body, w.RetryAfter, w.First, w.Every}, true
	case *httpBodyWire:
		return HTTPBody{HTTPMatch{w.Method, w.Path}, w.Null, w.Drop, w.Retype, w.Rename, w.Garble, w.Truncate}, true
	case *httpHeaderWire:
		return HTTPHeader{HTTPMatch{w.Method, w.Path}, w.Phase, w.Drop, w.Set, w.Add}, true
	}
	return nil, false
}
