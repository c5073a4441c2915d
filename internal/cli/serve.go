package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/state"
)

func newServeCmd(g *globals) *cobra.Command {
	var (
		host, listen, config, token, tokenFile string
		port                                   int
		seed                                   int64
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the fault-injection proxy server (Toxiproxy-compatible API)",
		Long: `Run the proxy server. Its HTTP API is wire-compatible with Toxiproxy 2.x,
so Toxiproxy's client libraries and toxiproxy-cli drive it unchanged, and so
do 'faultline proxy' and 'faultline toxic'. Prometheus metrics are at /metrics.

The API listens on loopback by default (Toxiproxy listens on all interfaces).
With a token (--token-file FILE or $FAULTLINE_TOKEN; --token too, but the
command line shows in ps), every request must carry "Authorization: Bearer
TOKEN" or gets 401. An API beyond loopback without a token starts, as
Toxiproxy does, with a warning: anyone who reaches it can inject faults.

A proxy created without a host in its listen address ("" or ":PORT") listens
on the API's host: on loopback while the API is, on all interfaces (as
Toxiproxy does) when the API is.

--config takes the same JSON as POST /populate, a list of proxies:
  [{"name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379"}]

On SIGINT or SIGTERM the server stops: every proxy closes its listener and
connections, so no fault outlives it.`,
		Example: `  faultline serve
  faultline serve --port 8475 --config proxies.json --seed 42
  faultline serve --listen 0.0.0.0:8474 --token-file /run/secrets/faultline-token`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			addr := listen
			if addr == "" {
				if port < 0 || port > 65535 {
					return usagef("--port %d: want 0 to 65535", port)
				}
				addr = net.JoinHostPort(host, strconv.Itoa(port))
			}
			if _, p, err := net.SplitHostPort(addr); err != nil || p == "" {
				return usagef("--listen %q: want HOST:PORT, e.g. 127.0.0.1:8474", addr)
			} else if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
				return usagef("--listen %q: port must be 0 to 65535", addr)
			}
			token, err := resolveToken(c, token, tokenFile)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context(), stopSignals()...)
			defer stop()
			log := slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
			return serve(ctx, c.ErrOrStderr(), log, addr, config, token, seed, g.state())
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "127.0.0.1", "`host` for the API to listen on")
	f.IntVar(&port, "port", 8474, "`port` for the API to listen on")
	f.StringVar(&listen, "listen", "", "`HOST:PORT` for the API (overrides --host and --port)")
	f.StringVar(&config, "config", "", "JSON `file` of proxies to create at start, as for POST /populate")
	f.Int64Var(&seed, "seed", 0, "seed for random draws (toxicity, jitter, slicer sizes); 0 picks one and logs it")
	f.StringVar(&token, "token", "", "bearer `token` required on every API call; shows in ps: prefer --token-file or $FAULTLINE_TOKEN")
	f.StringVar(&tokenFile, "token-file", "", "`file` holding the bearer token required on every API call (default $FAULTLINE_TOKEN)")
	return cmd
}

// resolveToken returns the bearer token of --token, --token-file or
// $FAULTLINE_TOKEN, in that order, warning on c's stderr (unless c is nil)
// when it came on the command line, where ps and the shell's history show
// it.
func resolveToken(c *cobra.Command, token, tokenFile string) (string, error) {
	switch {
	case token != "" && tokenFile != "":
		return "", usagef("give --token or --token-file, not both")
	case token != "":
		if c != nil {
			fmt.Fprintln(c.ErrOrStderr(), "faultline: warning: --token shows in ps and in the shell's history; use --token-file FILE or $FAULTLINE_TOKEN instead")
		}
		return token, nil
	case tokenFile != "":
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", usagef("--token-file: %v", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" || strings.ContainsAny(token, "\r\n") {
			return "", usagef("--token-file %s: want the token alone on one line", tokenFile)
		}
		return token, nil
	}
	return os.Getenv("FAULTLINE_TOKEN"), nil
}

func serve(ctx context.Context, stderr io.Writer, log *slog.Logger, addr, config, token string, seed int64, stateDir string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return failure(fmt.Errorf("API listen: %w", err))
	}
	defer ln.Close()
	listenHost, warning := exposure(ln.Addr().(*net.TCPAddr), token)
	if warning != "" {
		fmt.Fprintln(stderr, "faultline: warning: "+warning)
		log.Warn(warning)
	}
	srv := proxy.NewServer(proxy.ServerOptions{Seed: seed, Token: token, Version: version(), Logger: log, ListenHost: listenHost})
	defer srv.Close()
	if config != "" {
		if err := populateFromFile(srv, config); err != nil {
			return err
		}
	}
	hs := &http.Server{
		Handler:           logChanges(log, refuseWhileHalted(stateDir, srv, srv.Handler())),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	// A server runs long: once start-up has settled, only what it uses
	// stays resident.
	go func() {
		select {
		case <-time.After(time.Second):
			releaseStartupPages()
		case <-ctx.Done():
		}
	}()
	log.Info("faultline proxy server listening", "api", "http://"+ln.Addr().String(), "seed", srv.Seed(),
		"proxies", len(srv.List()), "auth", token != "")
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	haltDone := make(chan struct{})
	defer func() { <-haltDone }()
	go func() {
		defer close(haltDone)
		watchHalt(ctx, log, srv, stateDir)
	}()
	select {
	case err := <-errc:
		return failure(err)
	case <-ctx.Done():
	}
	log.Info("stopping: closing every proxy and connection")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return failure(err)
	}
	return nil
}

// exposure returns the host that proxies without one in their listen
// address take, the API's: loopback while the API listens there, all
// interfaces ("", as Toxiproxy does) when it listens on all. It also
// returns a warning when the API is reachable beyond loopback without a
// token (Toxiproxy's behaviour, which is kept).
func exposure(api *net.TCPAddr, token string) (listenHost, warning string) {
	if !api.IP.IsUnspecified() {
		listenHost = api.IP.String()
	}
	if !api.IP.IsLoopback() && token == "" {
		warning = fmt.Sprintf("the API listens on %s, beyond loopback, with no token: anyone who reaches it can inject faults; give --token-file FILE (or $FAULTLINE_TOKEN), or listen on 127.0.0.1", api)
	}
	return listenHost, warning
}

// watchHalt puts srv back as /reset does (every toxic removed, every
// proxy enabled) whenever the kill switch is engaged, until ctx ends. A
// proxy that cannot listen again does not keep the others' toxics.
func watchHalt(ctx context.Context, log *slog.Logger, srv *proxy.Server, stateDir string) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	failing := map[string]string{} // proxy: the error last logged for it
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			halted, note := state.Halted(stateDir)
			if !halted {
				clear(failing)
				continue
			}
			for _, p := range srv.List() {
				if n := len(p.Toxics()); n > 0 {
					p.RemoveAllToxics()
					log.Warn("halted: removed every toxic", "proxy", p.Name(), "toxics", n, "halt", strings.TrimSpace(note))
				}
				if p.Enabled() {
					continue
				}
				if err := p.Start(); err != nil {
					if failing[p.Name()] != err.Error() {
						failing[p.Name()] = err.Error()
						log.Error("halted: cannot enable proxy", "proxy", p.Name(), "err", err)
					}
					continue
				}
				delete(failing, p.Name())
				log.Warn("halted: enabled proxy", "proxy", p.Name(), "halt", strings.TrimSpace(note))
			}
		}
	}
}

// refuseWhileHalted answers 409, while the kill switch is engaged, to every
// request that would inject a fault or remove the user's set-up (see
// refusedWhileHalted). Putting things back goes on: removing toxics,
// enabling proxies, /reset, and reading.
func refuseWhileHalted(stateDir string, srv *proxy.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if halted, note := state.Halted(stateDir); halted && refusedWhileHalted(r, srv) {
				body := map[string]any{"error": haltedMessage(note), "status": http.StatusConflict}
				if r.URL.Path == "/populate" {
					body["proxies"] = nil // the shape of populate's answers, which old clients decode first
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusConflict)
				_ = json.NewEncoder(w).Encode(body)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// haltedMessage is the 409's text: it starts with "faultline is halted",
// which faultline's clients recognise.
func haltedMessage(note string) string {
	since, reason := haltNote(note)
	why := "since " + since
	if reason != "" {
		why += ": " + reason
	}
	return fmt.Sprintf("faultline is halted (%s): no proxy is created, changed, taken down or deleted and no toxic added or changed until 'faultline resume'; removing toxics, enabling proxies and /reset still work", why)
}

// haltNote splits the kill switch's note into its time and the reason
// given, if any.
func haltNote(note string) (since, reason string) {
	since, reason, _ = strings.Cut(strings.TrimSpace(note), " ")
	return since, strings.TrimSpace(reason)
}

// refusedWhileHalted reports whether a request that is not a read would
// inject a fault or remove the user's set-up: creating a proxy, /populate
// that creates or changes one, deleting a proxy, disabling one or moving
// it (listen, upstream), adding or changing a toxic. Removing toxics,
// enabling proxies and /reset are not. A request the API would refuse
// anyway (a proxy that does not exist, a body that is not JSON) is left
// for the API to answer. It leaves r's body as it found it, and reads it
// as the API does (the first JSON value).
func refusedWhileHalted(r *http.Request, srv *proxy.Server) bool {
	var parts []string
	for _, seg := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		s, err := url.PathUnescape(seg)
		if err != nil {
			return false // the API does not route it
		}
		parts = append(parts, s)
	}
	switch {
	case len(parts) == 1 && parts[0] == "proxies":
		return r.Method == http.MethodPost
	case len(parts) == 1 && parts[0] == "populate":
		cs, err := proxy.DecodeProxyConfigs(peekBody(r))
		return err == nil && srv.Changes(cs...)
	case len(parts) < 2 || parts[0] != "proxies":
		return false // /reset, and what the API does not route
	}
	p, err := srv.Get(parts[1])
	if err != nil {
		return false // 404
	}
	if len(parts) > 2 { // a toxic: adding or changing one is refused, removing one is not
		return parts[2] == "toxics" && r.Method != http.MethodDelete
	}
	if r.Method == http.MethodDelete {
		return true
	}
	update := struct {
		Enabled          *bool
		Listen, Upstream *string
	}{}
	if json.NewDecoder(bytes.NewReader(peekBody(r))).Decode(&update) != nil {
		return false // the API refuses it anyway
	}
	c := proxy.ProxyConfig{Name: p.Name(), Listen: p.Listen(), Upstream: p.Upstream()}
	if update.Listen != nil {
		c.Listen = *update.Listen
	}
	if update.Upstream != nil {
		c.Upstream = *update.Upstream
	}
	return update.Enabled != nil && !*update.Enabled || srv.Changes(c)
}

// peekBody returns up to the API's limit of r's body and leaves the body
// for the API to read as it came.
func peekBody(r *http.Request) []byte {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	return body
}

// logChanges logs every API request that changes something (any method
// but GET and HEAD), with its answer: the server's log is the record of
// what was injected and removed, and when.
func logChanges(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		log.Info("api", "method", r.Method, "path", r.URL.Path, "status", sw.status, "client", r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func populateFromFile(srv *proxy.Server, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	cs, err := proxy.DecodeProxyConfigs(data)
	if err != nil {
		return usagef("%s: %s", jsonPosition(path, data, err), describeJSONError(err))
	}
	if _, err := srv.Populate(cs); err != nil {
		return failure(fmt.Errorf("%s: %w", path, err))
	}
	return nil
}

// describeJSONError words a decoding error of a list of proxies for people.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return `empty: want a JSON list of proxies, e.g. [{"name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379"}]`
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early (a bracket or brace left open?)"
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf(`want a JSON list of proxies ([{"name": ..., "listen": ..., "upstream": ...}]), got %s`, te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: want %s, got %s", te.Field, jsonKind(te.Type.Kind()), te.Value)
	}
	return err.Error()
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool, reflect.Pointer:
		return "true or false"
	}
	return k.String()
}

// jsonPosition names path and, when err locates it, the line and column.
func jsonPosition(path string, data []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	case errors.Is(err, io.ErrUnexpectedEOF):
		off = int64(len(data))
	}
	if off < 0 || off > int64(len(data)) {
		return path
	}
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}
