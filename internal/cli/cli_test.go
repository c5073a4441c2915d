package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/internal/cli"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/proxy/proxytest"
)

func TestMain(m *testing.M) {
	// Never the user's state directory: a halt left there would stop the tests.
	dir, err := os.MkdirTemp("", "faultline-state")
	if err != nil {
		panic(err)
	}
	os.Setenv("FAULTLINE_STATE_DIR", dir)
	goleak.VerifyTestMain(m)
}

// run calls cli.Main and returns the exit code and both outputs.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func apiServer(t *testing.T) string {
	t.Helper()
	_, url := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	return url
}

// TestProxyAndToxicCommands drives faultline's server and the real
// Toxiproxy with the same commands: the client commands work with both.
func TestProxyAndToxicCommands(t *testing.T) {
	t.Run("faultline", func(t *testing.T) { proxyAndToxicCommands(t, apiServer(t), true) })
	t.Run("toxiproxy", func(t *testing.T) { proxyAndToxicCommands(t, proxytest.Toxiproxy(t), false) })
}

func proxyAndToxicCommands(t *testing.T, api string, faultline bool) {
	steps := []struct {
		args          []string
		code          int
		out           string // substring of stdout
		err           string // substring of stderr
		faultlineOnly bool   // Toxiproxy accepts invalid values
	}{
		{[]string{"proxy", "list"}, 0, "no proxies", "", false},
		{[]string{"proxy", "create", "web", "-l", "127.0.0.1:0", "-u", "127.0.0.1:9"}, 0, "created proxy web: 127.0.0.1:", "", false},
		{[]string{"proxy", "create", "web", "-l", "127.0.0.1:0", "-u", "127.0.0.1:9"}, 4, "", "HTTP 409: proxy already exists", false},
		{[]string{"proxy", "create", "nou"}, 2, "", "--upstream (-u) is required", false},
		{[]string{"proxy", "list"}, 0, "web", "", false},
		{[]string{"toxic", "add", "web", "-t", "latency", "-a", "latency=1000", "-a", "jitter=100"}, 0, "added latency toxic latency_downstream on web (downstream, toxicity 1): jitter=100 latency=1000", "", false},
		{[]string{"toxic", "add", "web", "-t", "bandwidth", "-u", "-a", "rate=10", "--toxicity", "0.5", "-n", "slow"}, 0, "slow on web (upstream, toxicity 0.5): rate=10", "", false},
		{[]string{"toxic", "add", "web", "-t", "latency", "-a", "latency=-5", "-n", "neg"}, 2, "", "HTTP 400: latency must be >= 0", true},
		{[]string{"toxic", "add", "web", "-t", "latency", "-a", "latency"}, 2, "", "want KEY=VALUE", false},
		{[]string{"toxic", "add", "web"}, 2, "", "--type (-t) is required", false},
		{[]string{"toxic", "add", "web", "-t", "latancy"}, 2, "", `unknown type "latancy", want one of latency, bandwidth`, false},
		{[]string{"toxic", "add", "web", "-t", "latency", "-a", "latenc=5"}, 2, "", `a latency toxic has no attribute "latenc"; its attributes: latency (ms), jitter (ms)`, false},
		{[]string{"toxic", "add", "web", "-t", "latency", "-a", "latency=abc"}, 2, "", `latency takes a whole number (ms), got "abc"`, false},
		{[]string{"toxic", "add", "web", "-t", "latency", "--toxicity", "2"}, 2, "", "--toxicity must be between 0 and 1", false},
		{[]string{"toxic", "add", "web", "-t", "latency"}, 4, "", "toxic latency_downstream: HTTP 409: toxic already exists (give another name with -n, or change it: faultline toxic update web -n latency_downstream", false},
		{[]string{"toxic", "add", "nope", "-t", "noop"}, 4, "", "proxy nope: HTTP 404: proxy not found", false},
		{[]string{"toxic", "update", "web", "-n", "slow", "-a", "latency=5"}, 2, "", `a bandwidth toxic has no attribute "latency"`, false},
		{[]string{"proxy", "create", "bad", "-l", "nonsense", "-u", "127.0.0.1:9"}, 2, "", `--listen "nonsense": want HOST:PORT`, false},
		{[]string{"toxic", "update", "web", "-n", "latency_downstream", "-a", "latency=2000"}, 0, "jitter=100 latency=2000", "", false},
		{[]string{"toxic", "update", "web", "-n", "slow", "-a", "rate=20"}, 0, "toxicity 0.5", "", false},
		{[]string{"proxy", "inspect", "web"}, 0, "latency_downstream  latency    downstream  1         jitter=100 latency=2000", "", false},
		{[]string{"toxic", "remove", "web", "-n", "latency_downstream"}, 0, "removed toxic latency_downstream from web", "", false},
		{[]string{"toxic", "remove", "web", "-n", "latency_downstream"}, 4, "", "HTTP 404: toxic not found", false},
		{[]string{"proxy", "toggle", "web"}, 0, "now disabled", "", false},
		{[]string{"proxy", "toggle", "web"}, 0, "now enabled", "", false},
		{[]string{"proxy", "delete", "web"}, 0, "deleted proxy web", "", false},
		{[]string{"proxy", "inspect", "web"}, 4, "", "HTTP 404: proxy not found", false},
		{[]string{"proxy", "frobnicate"}, 2, "", "unknown command", false},
		{[]string{"proxy", "list", "--bogus"}, 2, "", "unknown flag: --bogus", false},
	}
	for _, st := range steps {
		if st.faultlineOnly && !faultline {
			continue
		}
		code, out, errOut := run(t, append(st.args, "--api", api)...)
		if code != st.code || !strings.Contains(out, st.out) || !strings.Contains(errOut, st.err) {
			t.Errorf("faultline %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout containing %q, stderr containing %q",
				strings.Join(st.args, " "), code, out, errOut, st.code, st.out, st.err)
		}
	}
}

func TestProxyListJSON(t *testing.T) {
	api := apiServer(t)
	if code, _, errOut := run(t, "proxy", "create", "a", "-u", "127.0.0.1:9", "--api", api); code != 0 {
		t.Fatal(errOut)
	}
	code, out, _ := run(t, "proxy", "list", "--json", "--api", api)
	var got map[string]proxy.ProxyInfo
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got["a"].Upstream != "127.0.0.1:9" {
		t.Fatalf("proxy list --json = %d %q (%v)", code, out, err)
	}
}

func TestAPIMustBeHTTP(t *testing.T) {
	code, _, errOut := run(t, "proxy", "list", "--api", "ftp://127.0.0.1:1")
	if code != cli.ExitUsage || !strings.Contains(errOut, "want an http:// or https:// URL") {
		t.Fatalf("list --api ftp://... = %d %q, want 2", code, errOut)
	}
}

func TestAPIUnreachableIsError(t *testing.T) {
	code, _, errOut := run(t, "proxy", "list", "--api", "http://127.0.0.1:1")
	if code != cli.ExitError || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("list against nothing = %d %q, want 4 and the reason", code, errOut)
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "faultline ") {
		t.Fatalf("version = %d %q", code, out)
	}
	for _, cmd := range [][]string{{"--help"}, {"serve", "--help"}, {"proxy", "--help"}, {"toxic", "--help"}, {"toxic", "add", "--help"}} {
		code, out, _ := run(t, cmd...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v = %d %q", cmd, code, out)
		}
	}
	if code, out, _ := run(t, "completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash = %d, %d bytes", code, len(out))
	}
}

func TestServeConfigErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "proxies.json")
	if err := os.WriteFile(bad, []byte("[\n  {\"name\": \"a\", \"upstream\": 5}\n]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "serve", "--port", "0", "--config", bad)
	if code != cli.ExitUsage || !strings.Contains(errOut, bad+":2:") {
		t.Fatalf("serve with a bad config = %d %q, want 2 and %s:2:...", code, errOut, bad)
	}
	missing := filepath.Join(dir, "proxies2.json")
	_ = os.WriteFile(missing, []byte(`[{"name": "a"}]`), 0o644)
	code, _, errOut = run(t, "serve", "--port", "0", "--config", missing)
	if code != cli.ExitUsage || !strings.Contains(errOut, "missing required field: upstream at proxy 1") {
		t.Fatalf("serve with a config lacking upstream = %d %q", code, errOut)
	}
}

// TestServeStopsProxiesOnSIGTERM runs the real binary: a proxy created by
// --config carries a connection; SIGTERM must close it and exit 0.
func TestServeStopsProxiesOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := binary(t)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	listen := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "p.json")
	_ = os.WriteFile(cfg, []byte(`[{"name":"echo","listen":"`+listen+`","upstream":"`+up.Addr().String()+`"}]`), 0o644)

	cmd := exec.Command(bin, "serve", "--port", "0", "--config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	apiRE := regexp.MustCompile(`api=http://(\S+)`)
	var api string
	for sc.Scan() {
		if m := apiRE.FindStringSubmatch(sc.Text()); m != nil {
			api = m[1]
			break
		}
	}
	if api == "" {
		t.Fatal("serve did not log its API address")
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v, want exit 0", err)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection still open after serve stopped (read %d bytes)", n)
	}
}

// binary builds the faultline binary once for the tests that run it.
func binary(t *testing.T) string { return processtest.Faultline(t) }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemoShowsEachFault runs the walkthrough: every step must show the
// effect its fault has on a real HTTP client, and recovery must be clean.
func TestTourShowsEachFault(t *testing.T) {
	code, out, errOut := run(t, "tour", "--requests", "6")
	if code != 0 {
		t.Fatalf("tour = %d\n%s\n%s", code, out, errOut)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		for _, step := range []string{"no fault", "latency 200 ms", "black-holed", "connections reset", "service is down", "faults removed"} {
			if strings.HasPrefix(l, step) || strings.Contains(l, step) && !strings.Contains(l, "↳") {
				lines[step] = l
			}
		}
	}
	for step, want := range map[string]string{
		"no fault":          " 6      0 ",
		"latency 200 ms":    " 6      0 ",
		"black-holed":       "timed out",
		"connections reset": "6× connection reset",
		"service is down":   "6× connection refused",
		"faults removed":    " 6      0 ",
	} {
		if !strings.Contains(lines[step], want) {
			t.Errorf("tour step %q: line %q lacks %q\n%s", step, lines[step], want, out)
		}
	}
}

func TestValidate(t *testing.T) {
	good, bad := "../../experiment/testdata/valid/slow-dependency.yaml", "../../experiment/testdata/invalid/typos.yaml"
	code, out, errOut := run(t, "validate", good)
	if code != 0 || !strings.Contains(out, `valid: "slow-dependency", 4 targets, 3 faults; baseline 5s, inject 9s`) {
		t.Fatalf("validate good = %d %q %q", code, out, errOut)
	}
	code, _, errOut = run(t, "validate", good, bad)
	if code != cli.ExitUsage || !strings.Contains(errOut, bad+`:2:1: basline: unknown field (did you mean "baseline"?)`) || !strings.Contains(errOut, "1 of 2 files invalid") {
		t.Fatalf("validate good bad = %d %q", code, errOut)
	}
	if code, _, _ := run(t, "validate"); code != cli.ExitUsage {
		t.Fatalf("validate without files = %d, want 2", code)
	}
}

func TestSchemaCommandPrintsJSON(t *testing.T) {
	code, out, _ := run(t, "schema")
	var s map[string]any
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || s["$defs"] == nil {
		t.Fatalf("schema = %d, %v, %.200q", code, err, out)
	}
}

// TestExamplesAreValid keeps the shipped examples runnable as written.
func TestExamplesAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	shop, _ := filepath.Glob("../../examples/experiments/*.yaml")
	if len(files) == 0 || len(shop) < 5 {
		t.Fatalf("examples missing: %v %v", files, shop)
	}
	// The variables without a default: DB_PIDFILE (db-primary-down),
	// DB_URL (db-pool-exhausted) and DB_ADDR (db-packet-loss).
	code, out, errOut := run(t, append([]string{"validate", "--var", "DB_PIDFILE=/run/pg.pid", "--var", "DB_URL=postgres://shop@127.0.0.1:5432/shop",
		"--var", "DB_ADDR=127.0.0.1:5432"}, append(files, shop...)...)...)
	if code != 0 {
		t.Fatalf("validate examples = %d\n%s%s", code, out, errOut)
	}
}

// startServe runs 'faultline serve' with a state directory of its own
// until the test ends, and returns once its API answers.
func startServe(t *testing.T) (stateDir, api string, cl *proxy.Client) {
	t.Helper()
	stateDir, api = t.TempDir(), freeAddr(t)
	cmd := exec.Command(binary(t), "serve", "--listen", api, "--state-dir", stateDir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cl = proxy.NewClient("http://"+api, "")
	processtest.WaitFor(t, "the API", func() bool { _, err := cl.Version(t.Context()); return err == nil })
	return stateDir, api, cl
}

// While halted, 'faultline serve' puts every fault back as /reset does
// (toxics removed, proxies enabled) and refuses with a 409 that says so
// everything that would inject a fault or remove the user's set-up;
// putting things back goes on, and after resume all is accepted again.
func TestServeWhileHalted(t *testing.T) {
	stateDir, api, cl := startServe(t)
	ctx := t.Context()
	url := "--api=http://" + api
	up := freeAddr(t)
	for _, args := range [][]string{
		{"proxy", "create", "web", "-l", "127.0.0.1:0", "-u", up, url},
		{"proxy", "create", "db", "-l", "127.0.0.1:0", "-u", up, url},
		{"toxic", "add", "web", "-t", "latency", "-a", "latency=100", url},
		{"proxy", "toggle", "web", url},
	} {
		if code, out, errOut := run(t, args...); code != 0 {
			t.Fatalf("%v = %d %s %s", args, code, out, errOut)
		}
	}
	if code, _, _ := run(t, "halt", "--state-dir", stateDir, "--reason", "checkout paging"); code != 0 {
		t.Fatal("halt failed")
	}
	processtest.WaitFor(t, "the faults put back", func() bool {
		p, err := cl.Proxy(ctx, "web")
		return err == nil && p.Enabled && len(p.Toxics) == 0
	})
	code, _, errOut := run(t, "toxic", "add", "web", "-t", "latency", "-a", "latency=100", url)
	if code != cli.ExitError || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "faultline is halted") ||
		!strings.Contains(errOut, "checkout paging") || strings.Contains(errOut, "give another name") || !strings.Contains(errOut, "'faultline resume' releases it") {
		t.Errorf("toxic add while halted = %d %q, want a 409 that says why and what to do, with no hint of a name clash", code, errOut)
	}
	if code, out, _ := run(t, "status", "--state-dir", stateDir); code != 0 || !strings.Contains(out, "HALTED since ") || !strings.Contains(out, "reason: checkout paging") {
		t.Errorf("status while halted = %d %q, want the halt's time and reason", code, out)
	}
	web, err := cl.Proxy(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	same := fmt.Sprintf(`{"name":"web","listen":%q,"upstream":%q,"enabled":true,"toxics":[]}`, web.Listen, web.Upstream)
	other := freeAddr(t)
	type step struct{ method, path, body string }
	refused := []step{
		{"POST", "/proxies", `{"name":"new","listen":"127.0.0.1:0","upstream":"` + up + `"}`},
		{"POST", "/populate", `[{"name":"new","listen":"127.0.0.1:0","upstream":"` + up + `"}]`},
		{"POST", "/populate", `[{"name":"web","listen":"` + web.Listen + `","upstream":"127.0.0.1:1"}]`},
		{"POST", "/populate", `[{"name":"web","listen":"` + other + `","upstream":"` + up + `","enabled":false}]`},
		{"DELETE", "/proxies/db", ""},
		{"POST", "/proxies/web", `{"enabled":false}`},
		{"PATCH", "/proxies/web", `{"enabled": false} {}`},
		{"POST", "/proxies/web", `{"upstream":"127.0.0.1:1"}`},
		{"POST", "/proxies/web", `{"listen":"127.0.0.1:0"}`},
		{"POST", "/proxies/web/toxics", `{"type":"timeout"}`},
	}
	allowed := []step{
		{"POST", "/proxies/web", same}, // a client's Save() that changes nothing
		{"POST", "/populate", `[{"name":"web","listen":"` + web.Listen + `","upstream":"` + up + `"}]`},
		{"POST", "/reset", ""},
		{"GET", "/proxies", ""},
	}
	do := func(st step) int {
		req, _ := http.NewRequest(st.method, "http://"+api+st.path, strings.NewReader(st.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, st := range refused {
		if code := do(st); code != http.StatusConflict {
			t.Errorf("%s %s %s while halted: %d, want 409", st.method, st.path, st.body, code)
		}
	}
	for _, st := range allowed {
		if code := do(st); code >= 300 {
			t.Errorf("%s %s %s while halted: %d, want it done", st.method, st.path, st.body, code)
		}
	}
	if ps, err := cl.Proxies(ctx); err != nil || len(ps) != 2 || ps["web"].Upstream != up || ps["web"].Listen != web.Listen || !ps["web"].Enabled {
		t.Errorf("after the refused requests the set-up changed: %v %+v", err, ps)
	}
	// Taking a proxy down is refused; putting one back is not (a run
	// rolling back, or recover, does it while halted), nor removing a toxic.
	var ae *proxy.APIError
	if _, err := cl.SetEnabled(ctx, "web", false); !errors.As(err, &ae) || ae.Status != 409 {
		t.Errorf("disabling a proxy while halted: %v, want a 409", err)
	}
	if _, err := cl.SetEnabled(ctx, "web", true); err != nil {
		t.Errorf("enabling a proxy while halted: %v", err)
	}
	if err := cl.RemoveToxic(ctx, "web", "nope"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("removing a toxic while halted: %v, want it tried (404 for one that does not exist)", err)
	}
	if code, _, _ := run(t, "resume", "--state-dir", stateDir); code != 0 {
		t.Fatal("resume failed")
	}
	for _, args := range [][]string{
		{"toxic", "add", "web", "-t", "latency", "-a", "latency=100", url},
		{"proxy", "delete", "db", url},
		{"proxy", "create", "other", "-l", "127.0.0.1:0", "-u", up, url},
	} {
		if code, out, errOut := run(t, args...); code != 0 {
			t.Errorf("%v after resume = %d %s %s", args, code, out, errOut)
		}
	}
}

// With nothing listening at --api, the client commands say what to do.
func TestClientCommandsWithoutAServer(t *testing.T) {
	api := "--api=http://" + freeAddr(t)
	for _, args := range [][]string{{"proxy", "list", api}, {"toxic", "add", "web", "-t", "latency", api}} {
		code, _, errOut := run(t, args...)
		if code != cli.ExitError || !strings.Contains(errOut, "start one with 'faultline serve'") {
			t.Errorf("%v = %d %q, want %d and the hint", args, code, errOut, cli.ExitError)
		}
	}
}

// Usage mistakes get answers that help: --version works, a mistyped
// subcommand gets a suggestion, a bad number says what it wants.
func TestUsageHints(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "faultline "},
		{[]string{"proxy", "lst"}, 2, `did you mean "list"?`},
		{[]string{"stress", "cpo"}, 2, `did you mean "cpu"?`},
		{[]string{"serve", "--port", "notaport"}, 2, `invalid argument "notaport" for "--port" flag: want a number`},
		{[]string{"dns", "--listen", "0.0.0.0:0"}, 2, "an open resolver; pass --allow-remote"},
	} {
		code, out, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) || strings.Contains(errOut, "strconv") {
			t.Errorf("%v = %d %q %q, want %d and %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
}

// A proxy that cannot listen again does not keep the kill switch from
// removing the other proxies' toxics.
func TestServeHaltWithAProxyThatCannotListen(t *testing.T) {
	stateDir, _, cl := startServe(t)
	ctx := t.Context()
	for _, name := range []string{"a", "b"} {
		if _, err := cl.CreateProxy(ctx, name, "127.0.0.1:0", "127.0.0.1:9"); err != nil {
			t.Fatal(err)
		}
	}
	a, err := cl.SetEnabled(ctx, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", a.Listen) // a cannot listen again
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := cl.AddToxic(ctx, "b", proxy.ToxicInfo{Type: "latency", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"latency": 1000}}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(t, "halt", "--state-dir", stateDir); code != 0 {
		t.Fatal("halt failed")
	}
	processtest.WaitFor(t, "b's toxic removed", func() bool {
		b, err := cl.Proxy(ctx, "b")
		return err == nil && len(b.Toxics) == 0
	})
}

// An API beyond loopback without a token is warned about (and still
// serves, as Toxiproxy's does); proxies without a host in their listen
// address listen where the API does, so never on all interfaces while the
// API is on loopback.
func TestServeExposure(t *testing.T) {
	for _, c := range []struct {
		ip, token, host string
		warns           bool
	}{
		{"127.0.0.1", "", "127.0.0.1", false},
		{"::1", "", "::1", false},
		{"0.0.0.0", "", "", true},
		{"::", "", "", true},
		{"0.0.0.0", "s3cret", "", false},
		{"198.18.0.5", "", "198.18.0.5", true},
	} {
		host, warning := cli.Exposure(&net.TCPAddr{IP: net.ParseIP(c.ip), Port: 8474}, c.token)
		if host != c.host || (warning != "") != c.warns || c.warns && !strings.Contains(warning, "--token-file") {
			t.Errorf("API on %s, token %q: proxies on %q, warning %q; want %q, warning %v", c.ip, c.token, host, warning, c.host, c.warns)
		}
	}
	_, api, cl := startServe(t)
	for _, listen := range []string{"", ":0"} {
		p, err := cl.CreateProxy(t.Context(), "p"+listen, listen, "127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.Listen, "127.0.0.1:") {
			t.Errorf("a proxy created with listen %q while the API is on %s listens on %s", listen, api, p.Listen)
		}
	}
}

// The token can come from a file, which ps does not show; one given on
// the command line works but is warned about.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := freeAddr(t)
	cmd := exec.Command(binary(t), "serve", "--listen", api, "--state-dir", dir, "--token-file", file)
	var serveErr bytes.Buffer
	cmd.Stderr = &syncBuffer{b: &serveErr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	authed := proxy.NewClient("http://"+api, "s3cret")
	processtest.WaitFor(t, "the API", func() bool { _, err := authed.Proxies(t.Context()); return err == nil })
	var ae *proxy.APIError
	if _, err := proxy.NewClient("http://"+api, "").Proxies(t.Context()); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("without the token: %v, want a 401", err)
	}
	code, _, errOut := run(t, "proxy", "list", "--api", "http://"+api, "--token-file", file)
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Errorf("proxy list --token-file = %d %q", code, errOut)
	}
	code, _, errOut = run(t, "proxy", "list", "--api", "http://"+api, "--token", "s3cret")
	if code != 0 || !strings.Contains(errOut, "warning: --token shows in ps") || !strings.Contains(errOut, "--token-file") {
		t.Errorf("proxy list --token = %d %q, want it done with a warning", code, errOut)
	}
	cmd.Stderr.(*syncBuffer).mu.Lock()
	if strings.Contains(serveErr.String(), "warning") {
		t.Errorf("serve --token-file on loopback warned: %q", serveErr.String())
	}
	cmd.Stderr.(*syncBuffer).mu.Unlock()
	code, _, errOut = run(t, "serve", "--listen", freeAddr(t), "--state-dir", dir, "--token", "s3cret", "--config", filepath.Join(dir, "none.json"))
	if !strings.Contains(errOut, "warning: --token shows in ps") {
		t.Errorf("serve --token = %d %q, want the warning", code, errOut)
	}
	if code, _, errOut := run(t, "serve", "--token", "a", "--token-file", file); code != cli.ExitUsage {
		t.Errorf("serve --token --token-file = %d %q, want a usage error", code, errOut)
	}
	if err := os.WriteFile(file, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "proxy", "list", "--api", "http://"+api, "--token-file", file); code != cli.ExitUsage || !strings.Contains(errOut, "token alone on one line") {
		t.Errorf("an empty token file = %d %q, want a usage error", code, errOut)
	}
}

// syncBuffer is a buffer that a process's output and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Shell completion offers the toxic types after -t, the API's proxies
// where a proxy is named and a proxy's toxics after -n; with no API it
// offers nothing, at once and without a word.
func TestShellCompletion(t *testing.T) {
	s, url := proxytest.NewServer(t, proxy.ServerOptions{Seed: 1})
	for _, name := range []string{"redis", "db"} {
		p, err := s.Create(proxy.ProxyConfig{Name: name, Listen: "127.0.0.1:0", Upstream: "127.0.0.1:9"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AddToxic(proxy.Toxic{Name: name + "_slow", Effect: proxy.Latency{}}); err != nil {
			t.Fatal(err)
		}
	}
	complete := func(args ...string) (names []string, stderr string) {
		code, out, errOut := run(t, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %v = %d %s", args, code, errOut)
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") {
				names = append(names, l)
			}
		}
		return names, errOut
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"toxic", "add", "redis", "-t", ""}, strings.Join(proxy.ToxicTypes, " ")},
		{[]string{"proxy", "inspect", "--api", url, ""}, "db redis"},
		{[]string{"proxy", "toggle", "--api", url, ""}, "db redis"},
		{[]string{"proxy", "delete", "--api", url, ""}, "db redis"},
		{[]string{"toxic", "add", "--api", url, ""}, "db redis"},
		{[]string{"toxic", "remove", "--api", url, "--token", "ignored", ""}, "db redis"},
		{[]string{"toxic", "update", "redis", "--api", url, "-n", ""}, "redis_slow"},
		{[]string{"proxy", "inspect", "--api", url, "db", ""}, ""},
	} {
		names, errOut := complete(c.args...)
		if got := strings.Join(names, " "); got != c.want || strings.Contains(errOut, "warning") {
			t.Errorf("completing %v: %q (stderr %q), want %q", c.args, got, errOut, c.want)
		}
	}
	start := time.Now()
	names, errOut := complete("proxy", "inspect", "--api", "http://"+freeAddr(t), "")
	if len(names) != 0 || strings.Contains(errOut, "faultline:") || strings.Contains(errOut, "refused") || time.Since(start) > 5*time.Second {
		t.Errorf("completing with no API: %q, stderr %q, after %v; want nothing, quietly, at once", names, errOut, time.Since(start))
	}
}
