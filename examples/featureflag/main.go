// Command featureflag shows faultline extended from Go: a fault family of
// its own, "flip a feature flag in my service", run by faultline's runner,
// journaled and reverted like the built-in ones, and recovered by this
// program's own recover after a SIGKILL.
//
//	featureflag serve --listen 127.0.0.1:8090     # a service with flags (for trying it)
//	featureflag run experiment.yaml                # an experiment that may use feature_flag: {...}
//	featureflag recover RUN_DIR                    # undo what a killed run left
//
// An experiment's fault:
//
//   - name: new checkout off
//     feature_flag: {url: "http://{shop.addr}", flag: new-checkout, value: false}
//     duration: 10s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/plan"
	"github.com/faultline/faultline/runner"
)

// FeatureFlag is the action: set a flag of a service to a value for the
// fault's window.
type FeatureFlag struct {
	URL, Flag string
	Value     bool
}

// Kind names the action in results and reports.
func (FeatureFlag) Kind() string { return "feature_flag" }

// flagState is what the undo needs: where the flag is, and what it was.
type flagState struct {
	URL   string `json:"url"`
	Flag  string `json:"flag"`
	Value bool   `json:"value"`
}

// registry is faultline's own families and ours.
func registry() *fault.Registry {
	r := builtin.Registry()
	r.RegisterAction("feature_flag", decodeFeatureFlag, struct {
		URL   string `json:"url" jsonschema_description:"the service's base URL"`
		Flag  string `json:"flag"`
		Value bool   `json:"value"`
	}{})
	fault.RegisterFunc(r, injectFeatureFlag)
	r.RegisterUndo("feature_flag", undoFeatureFlag)
	return r
}

// decodeFeatureFlag reads feature_flag: {url, flag, value}.
func decodeFeatureFlag(n experiment.Node) experiment.Action {
	n.Keys("url", "flag", "value")
	a := FeatureFlag{URL: n.String("url"), Flag: n.String("flag"), Value: n.Bool("value")}
	if !strings.HasPrefix(a.URL, "http://") {
		n.Errorf("url", "want the service's http:// URL, got %q", a.URL)
	}
	if a.Flag == "" {
		n.Errorf("flag", "required: the flag's name")
	}
	return a
}

// injectFeatureFlag reads the flag, then sets it, journaled with what to
// put back: faultline reverts it at the window's end (and on every way
// out), or recover does after a SIGKILL.
func injectFeatureFlag(ctx context.Context, f *fault.Fault, a FeatureFlag) error {
	was, err := getFlag(ctx, a.URL, a.Flag)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(flagState{URL: a.URL, Flag: a.Flag, Value: was})
	err = f.Step(ctx, fault.Step{
		What: fmt.Sprintf("set flag %s to %v at %s", a.Flag, a.Value, a.URL),
		Undo: &journal.Undo{Kind: "feature_flag", Data: data},
		Do:   func(ctx context.Context) error { return setFlag(ctx, a.URL, a.Flag, a.Value) },
		// No Revert: the registry's undo, the one recover runs, puts it back.
	})
	if err != nil {
		return err
	}
	f.Hit(fmt.Sprintf("flag %s at %s (was %v)", a.Flag, a.URL, was))
	return nil
}

func undoFeatureFlag(ctx context.Context, u *journal.Undo) (string, error) {
	var s flagState
	if err := json.Unmarshal(u.Data, &s); err != nil {
		return "", err
	}
	return fmt.Sprintf("set flag %s back to %v at %s", s.Flag, s.Value, s.URL), setFlag(ctx, s.URL, s.Flag, s.Value)
}

func getFlag(ctx context.Context, url, name string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/flags/"+name, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("flag %s: %s", name, resp.Status)
	}
	return strings.TrimSpace(string(b)) == "true", nil
}

func setFlag(ctx context.Context, url, name string, v bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url+"/flags/"+name, strings.NewReader(fmt.Sprint(v)))
	if err != nil {
		return fault.NotApplied(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err // no answer: it may be set all the same
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 4 {
		return fault.NotApplied(fmt.Errorf("flag %s: %s", name, resp.Status))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("flag %s: %s", name, resp.Status)
	}
	return nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: featureflag serve --listen ADDR | run FILE | recover RUN_DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "run":
		err = run(ctx, os.Args[2])
	case "recover":
		if failed, _ := runner.Recover(ctx, os.Args[2], registry(), os.Stdout); failed > 0 {
			err = fmt.Errorf("%d change(s) could not be undone", failed)
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "featureflag:", err)
		os.Exit(1)
	}
}

// run runs an experiment with our registry: its files may use
// feature_flag, validated with its place as any other key.
func run(ctx context.Context, file string) error {
	reg := registry()
	x, err := experiment.ParseFile(file, experiment.Options{AllowNoStop: true, Actions: reg.Actions()})
	if err != nil {
		return err
	}
	p, err := plan.Build(x, plan.Options{Faults: reg})
	if err != nil {
		return err
	}
	out := "faultline-runs/" + x.Name + "-" + time.Now().UTC().Format("20060102T150405Z")
	if dir := os.Getenv("RUN_DIR"); dir != "" {
		out = dir
	}
	res, err := runner.Run(ctx, p, runner.Options{OutDir: out, Faults: reg, Progress: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Println(res.Verdict, out)
	return nil
}

// serve is a service with feature flags: GET and PUT /flags/NAME.
func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8090", "address")
	_ = fs.Parse(args)
	var mu sync.Mutex
	flags := map[string]bool{}
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/flags/")
		if !ok || name == "" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			fmt.Fprintln(w, flags[name])
		case http.MethodPut:
			b, _ := io.ReadAll(io.LimitReader(r.Body, 16))
			flags[name] = strings.TrimSpace(string(b)) == "true"
		default:
			http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
		}
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
