package proxy

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBody bounds API request bodies.
const maxBody = 1 << 20

// Handler returns the HTTP API, wire-compatible with Toxiproxy 2.x:
//
//	GET    /proxies                       all proxies, by name
//	POST   /proxies                       create (201)
//	POST   /populate                      create or replace many (201)
//	GET    /proxies/{proxy}               one proxy
//	POST   /proxies/{proxy}               update listen, upstream, enabled
//	PATCH  /proxies/{proxy}               the same
//	DELETE /proxies/{proxy}               delete (204)
//	GET    /proxies/{proxy}/toxics        its toxics
//	POST   /proxies/{proxy}/toxics        add a toxic (200)
//	GET    /proxies/{proxy}/toxics/{t}    one toxic
//	POST   /proxies/{proxy}/toxics/{t}    update toxicity and attributes (merged)
//	PATCH  /proxies/{proxy}/toxics/{t}    the same
//	DELETE /proxies/{proxy}/toxics/{t}    remove (204)
//	POST   /reset                         remove all toxics, enable all (204)
//	GET    /version                       {"version": "..."}
//	GET    /metrics                       Prometheus metrics
//
// Errors are {"error": "...", "status": N}. Every answer of a route has
// an X-Toxiproxy-Request-Id header, as Toxiproxy's. Requests from browsers
// (User-Agent "Mozilla/...") get 403, against cross-site requests; with a
// token set, requests without "Authorization: Bearer TOKEN" get 401.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /proxies", s.listProxies)
	mux.HandleFunc("POST /proxies", s.createProxy)
	mux.HandleFunc("POST /populate", s.populate)
	mux.HandleFunc("GET /proxies/{proxy}", s.withProxy(s.showProxy))
	mux.HandleFunc("POST /proxies/{proxy}", s.withProxy(s.updateProxy))
	mux.HandleFunc("PATCH /proxies/{proxy}", s.withProxy(s.updateProxy))
	mux.HandleFunc("DELETE /proxies/{proxy}", s.deleteProxy)
	mux.HandleFunc("GET /proxies/{proxy}/toxics", s.withProxy(s.listToxics))
	mux.HandleFunc("POST /proxies/{proxy}/toxics", s.withProxy(s.addToxic))
	mux.HandleFunc("GET /proxies/{proxy}/toxics/{toxic}", s.withProxy(s.showToxic))
	mux.HandleFunc("POST /proxies/{proxy}/toxics/{toxic}", s.withProxy(s.updateToxic))
	mux.HandleFunc("PATCH /proxies/{proxy}/toxics/{toxic}", s.withProxy(s.updateToxic))
	mux.HandleFunc("DELETE /proxies/{proxy}/toxics/{toxic}", s.withProxy(s.removeToxic))
	mux.HandleFunc("POST /reset", s.reset)
	mux.HandleFunc("GET /version", s.version)
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	return s.guard(mux)
}

// requestIDHeader is sent, as by Toxiproxy, on every answer of a route the
// API has (not on the 404 of an unknown path or a 405).
const requestIDHeader = "X-Toxiproxy-Request-Id"

func (s *Server) guard(mux *http.ServeMux) http.Handler {
	token := []byte("Bearer " + s.opts.Token)
	var next http.Handler = mux
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			w.Header().Set(requestIDHeader, newRequestID())
		}
		if strings.HasPrefix(r.UserAgent(), "Mozilla/") {
			http.Error(w, "User agent not allowed", http.StatusForbidden)
			return
		}
		if s.opts.Token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="faultline"`)
			apiError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

// The JSON forms, in Toxiproxy's field order.
type proxyJSON struct {
	Name     string      `json:"name"`
	Listen   string      `json:"listen"`
	Upstream string      `json:"upstream"`
	Enabled  bool        `json:"enabled"`
	Toxics   []toxicJSON `json:"toxics"`
}

type toxicJSON struct {
	Attributes any     `json:"attributes"`
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Stream     string  `json:"stream"`
	Toxicity   float32 `json:"toxicity"`
}

func toxicView(t Toxic) toxicJSON {
	return toxicJSON{Attributes: t.Effect.wire(), Name: t.Name, Type: t.Effect.Type(), Stream: t.streamString(), Toxicity: t.toxicity()}
}

func proxyView(p *Proxy) proxyJSON {
	p.mu.Lock()
	v := proxyJSON{Name: p.name, Listen: p.listen, Upstream: p.upstream, Enabled: p.run != nil}
	p.mu.Unlock()
	v.Toxics = []toxicJSON{}
	for _, t := range p.Toxics() {
		v.Toxics = append(v.Toxics, toxicView(t))
	}
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		apiError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

type errorJSON struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func apiError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(errorJSON{msg, status})
	http.Error(w, string(b), status)
}

// fail maps an engine error to Toxiproxy's status and words. what is
// "proxy" or "toxic", for not-found and exists errors.
func fail(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, what+" not found")
	case errors.Is(err, ErrExists):
		apiError(w, http.StatusConflict, what+" already exists")
	case errors.Is(err, ErrInvalid):
		apiError(w, http.StatusBadRequest, err.Error())
	default:
		apiError(w, http.StatusInternalServerError, err.Error())
	}
}

// decode reads a JSON body into v; it reports false after answering 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		apiError(w, http.StatusBadRequest, "bad request body: "+jsonErrorText(err))
		return false
	}
	return true
}

func (s *Server) withProxy(h func(http.ResponseWriter, *http.Request, *Proxy)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Get(r.PathValue("proxy"))
		if err != nil {
			fail(w, "proxy", err)
			return
		}
		h(w, r, p)
	}
}

func (s *Server) listProxies(w http.ResponseWriter, _ *http.Request) {
	out := map[string]proxyJSON{}
	for _, p := range s.List() {
		out[p.name] = proxyView(p)
	}
	writeJSON(w, http.StatusOK, out)
}

type proxyInput struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  *bool  `json:"enabled"`
}

func (in proxyInput) config() ProxyConfig {
	return ProxyConfig{Name: in.Name, Listen: in.Listen, Upstream: in.Upstream, Enabled: in.Enabled == nil || *in.Enabled}
}

func (s *Server) createProxy(w http.ResponseWriter, r *http.Request) {
	var in proxyInput
	if !decode(w, r, &in) {
		return
	}
	p, err := s.Create(in.config())
	if err != nil {
		fail(w, "proxy", err)
		return
	}
	writeJSON(w, http.StatusCreated, proxyView(p))
}

func (s *Server) populate(w http.ResponseWriter, r *http.Request) {
	var in []proxyInput
	type result struct {
		Error   string      `json:"error,omitempty"`
		Status  int         `json:"status,omitempty"`
		Proxies []proxyJSON `json:"proxies"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, result{Error: "bad request body: " + jsonErrorText(err), Status: http.StatusBadRequest})
		return
	}
	cs := make([]ProxyConfig, len(in))
	for i, p := range in {
		cs[i] = p.config()
	}
	done, err := s.Populate(cs)
	var res result
	for _, p := range done {
		res.Proxies = append(res.Proxies, proxyView(p))
	}
	if err != nil {
		res.Status = http.StatusInternalServerError
		if errors.Is(err, ErrInvalid) {
			res.Status = http.StatusBadRequest
		}
		res.Error = err.Error()
		writeJSON(w, res.Status, res)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

func (s *Server) showProxy(w http.ResponseWriter, _ *http.Request, p *Proxy) {
	writeJSON(w, http.StatusOK, proxyView(p))
}

func (s *Server) updateProxy(w http.ResponseWriter, r *http.Request, p *Proxy) {
	cur := proxyView(p)
	in := proxyInput{Listen: cur.Listen, Upstream: cur.Upstream, Enabled: &cur.Enabled}
	if !decode(w, r, &in) {
		return
	}
	enabled := cur.Enabled
	if in.Enabled != nil {
		enabled = *in.Enabled
	}
	if err := p.Update(s.withHost(in.Listen), in.Upstream, enabled); err != nil {
		fail(w, "proxy", err)
		return
	}
	writeJSON(w, http.StatusOK, proxyView(p))
}

func (s *Server) deleteProxy(w http.ResponseWriter, r *http.Request) {
	if err := s.Delete(r.PathValue("proxy")); err != nil {
		fail(w, "proxy", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listToxics(w http.ResponseWriter, _ *http.Request, p *Proxy) {
	out := []toxicJSON{}
	for _, t := range p.Toxics() {
		out = append(out, toxicView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

type toxicInput struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Stream     *string         `json:"stream"`
	Toxicity   *float32        `json:"toxicity"`
	Attributes json.RawMessage `json:"attributes"`
}

func (s *Server) addToxic(w http.ResponseWriter, r *http.Request, p *Proxy) {
	var in toxicInput
	if !decode(w, r, &in) {
		return
	}
	t := Toxic{Name: in.Name, Toxicity: in.Toxicity}
	if in.Stream != nil {
		st, err := ParseStream(*in.Stream)
		if err != nil {
			fail(w, "toxic", err)
			return
		}
		t.Stream, t.streamName = st, *in.Stream
	}
	e := newEffect(in.Type)
	if e == nil {
		apiError(w, http.StatusBadRequest, "invalid toxic type")
		return
	}
	if t.Name == "" {
		t.Name = e.Type() + "_" + t.streamString()
	}
	if _, err := p.Toxic(t.Name); err == nil {
		apiError(w, http.StatusConflict, "toxic already exists")
		return
	}
	e, err := applyAttributes(e, nullToEmpty(in.Attributes))
	if err != nil {
		fail(w, "toxic", err)
		return
	}
	t.Effect = e
	t, err = p.AddToxic(t)
	if err != nil {
		fail(w, "toxic", err)
		return
	}
	writeJSON(w, http.StatusOK, toxicView(t))
}

func nullToEmpty(raw json.RawMessage) json.RawMessage {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	return raw
}

func (s *Server) showToxic(w http.ResponseWriter, r *http.Request, p *Proxy) {
	t, err := p.Toxic(r.PathValue("toxic"))
	if err != nil {
		fail(w, "toxic", err)
		return
	}
	writeJSON(w, http.StatusOK, toxicView(t))
}

func (s *Server) updateToxic(w http.ResponseWriter, r *http.Request, p *Proxy) {
	var in toxicInput
	if !decode(w, r, &in) {
		return
	}
	t, err := p.modifyToxic(r.PathValue("toxic"), func(t Toxic) (Toxic, error) {
		e, err := applyAttributes(t.Effect, nullToEmpty(in.Attributes))
		if err != nil {
			return t, err
		}
		t.Effect = e
		if in.Toxicity != nil {
			t.Toxicity = in.Toxicity
		}
		return t, nil
	})
	if err != nil {
		fail(w, "toxic", err)
		return
	}
	writeJSON(w, http.StatusOK, toxicView(t))
}

func (s *Server) removeToxic(w http.ResponseWriter, r *http.Request, p *Proxy) {
	if err := p.RemoveToxic(r.PathValue("toxic")); err != nil {
		fail(w, "toxic", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) reset(w http.ResponseWriter, _ *http.Request) {
	if err := s.Reset(); err != nil {
		fail(w, "proxy", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	b, _ := json.Marshal(s.opts.Version)
	_, _ = fmt.Fprintf(w, "{\"version\": %s}\n", b)
}

// DecodeProxyConfigs reads a JSON array of proxies, as POST /populate and
// faultline serve --config take it: [{"name", "listen", "upstream",
// "enabled"}]; enabled defaults to true. Errors wrap *json.SyntaxError or
// *json.UnmarshalTypeError, whose Offset locates the problem.
func DecodeProxyConfigs(data []byte) ([]ProxyConfig, error) {
	var in []proxyInput
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&in); err != nil {
		return nil, err
	}
	cs := make([]ProxyConfig, len(in))
	for i, p := range in {
		cs[i] = p.config()
	}
	for i, c := range cs {
		if err := c.check(); err != nil {
			return nil, invalidf("%s at proxy %d", err, i+1)
		}
	}
	return cs, nil
}
