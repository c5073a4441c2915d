package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/proxy"
)

func newTourCmd(g *globals) *cobra.Command {
	var requests int
	cmd := &cobra.Command{
		Use:   "tour",
		Short: "A few seconds' walkthrough of the proxy's faults against a small service",
		Long: `Starts a small HTTP service and a faultline proxy in front of it, all on
loopback and in this process, then sends real requests through the proxy while
it injects one fault after another: latency, a black hole (timeout), connection
resets, the service going down. Each step shows what a client sees, and the
'faultline toxic' command that does the same against 'faultline serve'.
Every fault is removed at the end, also on Ctrl-C.`,
		Example: "  faultline tour\n  faultline tour --requests 50",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if requests < 1 {
				return usagef("--requests must be at least 1, got %d", requests)
			}
			ctx, stop, err := killSwitch(c, g.state())
			if err != nil {
				return err
			}
			defer stop()
			return runTour(ctx, c.OutOrStdout(), requests)
		},
	}
	cmd.Flags().IntVar(&requests, "requests", 10, "requests sent in each step")
	return cmd
}

// tourTimeout is the tour client's timeout per request.
const tourTimeout = 500 * time.Millisecond

// tourStep is one fault of the walkthrough.
type tourStep struct {
	title, cli string
	apply      func(*proxy.Proxy) error
}

func runTour(ctx context.Context, w io.Writer, requests int) error {
	svc, err := startInventory()
	if err != nil {
		return failure(err)
	}
	defer svc.Close()
	srv := proxy.NewServer(proxy.ServerOptions{Seed: 1})
	defer srv.Close() // rollback on every way out: proxies stop, toxics go
	p, err := srv.Create(proxy.ProxyConfig{Name: "inventory", Listen: "127.0.0.1:0", Upstream: svc.Addr().String(), Enabled: true})
	if err != nil {
		return failure(err)
	}
	client := &http.Client{Timeout: tourTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + p.Listen() + "/items"

	fmt.Fprintf(w, "faultline tour: an inventory service on %s, a faultline proxy in front of it on %s.\n", svc.Addr(), p.Listen())
	fmt.Fprintf(w, "Each step sends %d requests (a new connection each, %v client timeout) through the proxy.\n\n", requests, tourTimeout)
	addToxic := func(t proxy.Toxic) func(*proxy.Proxy) error {
		return func(p *proxy.Proxy) error { _, err := p.AddToxic(t); return err }
	}
	steps := []tourStep{
		{"no fault (baseline)", "", func(*proxy.Proxy) error { return nil }},
		{"latency 200 ms ± 20 ms on replies", "faultline toxic add inventory -t latency -a latency=200 -a jitter=20",
			addToxic(proxy.Toxic{Effect: proxy.Latency{Delay: 200 * time.Millisecond, Jitter: 20 * time.Millisecond}})},
		{"half of the requests black-holed (timeout, toxicity 0.5)", "faultline toxic add inventory -t timeout -u --toxicity 0.5",
			addToxic(proxy.Toxic{Stream: proxy.Upstream, Toxicity: new(float32(0.5)), Effect: proxy.Timeout{}})},
		{"connections reset (reset_peer on requests)", "faultline toxic add inventory -t reset_peer -u",
			addToxic(proxy.Toxic{Stream: proxy.Upstream, Effect: proxy.ResetPeer{}})},
		{"the service is down (proxy disabled)", "faultline proxy toggle inventory",
			func(p *proxy.Proxy) error { return p.Update(p.Listen(), p.Upstream(), false) }},
		{"all faults removed (recovery)", "curl -X POST http://127.0.0.1:8474/reset",
			func(*proxy.Proxy) error { return srv.Reset() }},
	}
	fmt.Fprintf(w, "%-58s %5s %6s %9s %9s  %s\n", "STEP", "OK", "ERRORS", "P50", "MAX", "WHAT THE CLIENT SAW")
	for i, st := range steps {
		if i > 0 && i < len(steps)-1 {
			// Each fault on its own: undo the previous one first.
			if err := srv.Reset(); err != nil {
				return failure(err)
			}
		}
		if err := st.apply(p); err != nil {
			return failure(fmt.Errorf("%s: %w", st.title, err))
		}
		r := measure(ctx, client, url, requests)
		if ctx.Err() != nil {
			fmt.Fprintln(w, "\ninterrupted: every fault removed")
			return &exitError{ExitAborted, errors.New("interrupted")}
		}
		fmt.Fprintf(w, "%-58s %5d %6d %9s %9s  %s\n", st.title, r.ok, r.errors, r.p50, r.max, r.summary())
		if st.cli != "" {
			fmt.Fprintf(w, "%-58s %s\n", "", "  ↳ same with the server: "+st.cli)
		}
	}
	fmt.Fprintln(w, "\nP50 and MAX are over every request of a step, failed ones included.")
	fmt.Fprintln(w, "Every fault is removed. Try it on your own service: run 'faultline serve',")
	fmt.Fprintln(w, "'faultline proxy create NAME -l LISTEN -u UPSTREAM', point your client at LISTEN, and add toxics.")
	return nil
}

// startInventory serves a small JSON API on loopback.
func startInventory() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[{"sku":"A1","stock":12},{"sku":"B2","stock":0}]}`)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return ln, nil
}

type tourResult struct {
	ok, errors int
	p50, max   time.Duration
	reasons    map[string]int
}

func (r tourResult) summary() string {
	var parts []string
	for reason, n := range r.reasons {
		parts = append(parts, fmt.Sprintf("%d× %s", n, reason))
	}
	slices.Sort(parts)
	if r.ok > 0 {
		parts = append([]string{fmt.Sprintf("%d× 200 OK", r.ok)}, parts...)
	}
	return strings.Join(parts, ", ")
}

func measure(ctx context.Context, client *http.Client, url string, n int) tourResult {
	r := tourResult{reasons: map[string]int{}}
	var lat []time.Duration
	for range n {
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		d := time.Since(start)
		lat = append(lat, d)
		r.max = max(r.max, d)
		if err != nil {
			r.errors++
			r.reasons[errorReason(err)]++
			continue
		}
		r.ok++
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50 = roundDuration(lat[len(lat)/2])
		r.max = roundDuration(r.max)
	}
	return r
}

// roundDuration keeps three significant figures or so.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// errorReason says in a few words what a client error was.
func errorReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return err.Error()
}
