package experiment_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/proxy"
)

func TestParseIssueExample(t *testing.T) {
	x, err := experiment.ParseFile("testdata/valid/slow-dependency.yaml", experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if x.Name != "slow-dependency" || len(x.Targets) != 4 || len(x.Faults) != 3 || len(x.StopWhen) != 2 || len(x.SteadyState) != 4 {
		t.Fatalf("parsed %+v", x)
	}
	var names []string
	for _, tg := range x.Targets {
		names = append(names, tg.Name)
	}
	if diff := cmp.Diff([]string{"front", "dep", "dep-link", "cache"}, names); diff != "" {
		t.Errorf("targets not in file order (-want +got):\n%s", diff)
	}
	if x.Inject != 9*time.Second {
		t.Errorf("inject = %v, want 9s (the latest end among faults with a duration)", x.Inject)
	}
	if got := x.Faults[0].Action; got != (experiment.ProxyToxic{Effect: proxy.Latency{Delay: time.Second, Jitter: 100 * time.Millisecond}}) {
		t.Errorf("faults[0] action = %#v", got)
	}
	if got := x.Faults[2].Select; got.Mode != "PERCENT" || got.N != 50 {
		t.Errorf("faults[2] select = %+v", got)
	}
	if r := x.Traffic.Requests[1]; r.Method != "POST" || r.Headers["Content-Type"] != "application/json" || r.Body != `{"sku": "A1"}` {
		t.Errorf("traffic.requests[1] = %+v", r)
	}
	if p := x.SteadyState[3].Probe; p == nil || p.Kind != "http" || p.URL != "http://127.0.0.1:18080/health" || p.Expect != "200" {
		t.Errorf("steady_state[3] probe = %+v", p)
	}
}

// TestInvalidFiles checks every file of testdata/invalid: its "# want:
// LINE:COL FIELD: MESSAGE" lines must be exactly the problems reported.
func TestInvalidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no invalid files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, file+":"+w)
				}
			}
			_, err = experiment.Parse(file, data, experiment.Options{})
			if err == nil {
				t.Fatalf("Parse(%s) accepted an invalid file", file)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *experiment.Error
				if !errors.As(e, &pe) {
					t.Fatalf("error %v is not an *experiment.Error", e)
				}
				got = append(got, pe.Error())
			}
			for _, w := range wants {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("missing: %s", w)
				}
			}
			if len(got) != len(wants) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(wants), strings.Join(got, "\n"))
			}
		})
	}
}

func TestUndefinedVariable(t *testing.T) {
	src := "name: v\ntargets:\n  db: {proxy: {listen: \"${LISTEN}\", upstream: 127.0.0.1:1}}\ninject: 1s\nfaults: [{name: d, target: db, down: {}}]\nstop_when: [error_rate > 1%]\ntraffic: {rate: 1/s, requests: [\"GET ${URL}\"]}\n"
	_, err := experiment.Parse("v.yaml", []byte(src), experiment.Options{Vars: map[string]string{"LISTEN": "127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), "v.yaml:7:") || !strings.Contains(err.Error(), "${URL} is not defined") {
		t.Fatalf("Parse with ${URL} undefined: %v", err)
	}
	t.Setenv("URL", "http://127.0.0.1:1/")
	x, err := experiment.Parse("v.yaml", []byte(src), experiment.Options{Vars: map[string]string{"LISTEN": "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if x.Targets[0].Proxy.Listen != "127.0.0.1:0" || x.Traffic.Requests[0].URL != "http://127.0.0.1:1/" {
		t.Fatalf("variables not substituted: %+v %+v", x.Targets[0].Proxy, x.Traffic.Requests[0])
	}
}

func TestVariableDefault(t *testing.T) {
	src := "name: v\ntargets:\n  db: {proxy: {listen: \"${LISTEN:-127.0.0.1:0}\", upstream: \"${UP:-}127.0.0.1:1\"}}\ninject: 1s\nfaults: [{name: d, target: db, down: {}}]\nstop_when: [error_rate > 1%]\ntraffic: {rate: 1/s, requests: [\"GET http://127.0.0.1:1/\"]}\n"
	x, err := experiment.Parse("v.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Targets[0].Proxy.Listen; got != "127.0.0.1:0" {
		t.Errorf("default not used: listen %q", got)
	}
	if got := x.Targets[0].Proxy.Upstream; got != "127.0.0.1:1" {
		t.Errorf("empty default: upstream %q", got)
	}
	x, err = experiment.Parse("v.yaml", []byte(src), experiment.Options{Vars: map[string]string{"LISTEN": "127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Targets[0].Proxy.Listen; got != "127.0.0.1:9" {
		t.Errorf("--var did not win over the default: listen %q", got)
	}
}

func TestAllowNoStop(t *testing.T) {
	src := []byte("name: n\ntargets: {db: {proxy: {listen: 127.0.0.1:0, upstream: 127.0.0.1:1}}}\nfaults: [{name: d, target: db, down: {}, duration: 1s}]\n")
	if _, err := experiment.Parse("n.yaml", src, experiment.Options{}); err == nil || !strings.Contains(err.Error(), "no stop condition") {
		t.Fatalf("without stop_when: %v", err)
	}
	if _, err := experiment.Parse("n.yaml", src, experiment.Options{AllowNoStop: true}); err != nil {
		t.Fatalf("with AllowNoStop: %v", err)
	}
}

func TestParseCondition(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want experiment.Condition
		err  string
	}{
		{in: "error_rate < 2%", want: experiment.Condition{Metric: "error_rate", Op: "<", Value: 0.02}},
		{in: "latency p99 < 600ms", want: experiment.Condition{Metric: "latency", Stat: "p99", Op: "<", Value: 0.6}},
		{in: "latency p99.9 of checkout <= 3.5s for 5s", want: experiment.Condition{Metric: "latency", Stat: "p99.9", Of: "checkout", Op: "<=", Value: 3.5, For: 5 * time.Second}},
		{in: "latency mean < 3x baseline", want: experiment.Condition{Metric: "latency", Stat: "mean", Op: "<", Value: 3, Baseline: true}},
		{in: "throughput >= 100/s", want: experiment.Condition{Metric: "throughput", Op: ">=", Value: 100}},
		{in: "probe_success of health < 90% for 5s", want: experiment.Condition{Metric: "probe_success", Of: "health", Op: "<", Value: 0.9, For: 5 * time.Second}},
		{in: "probe_latency p99 of health < 3x baseline", want: experiment.Condition{Metric: "probe_latency", Stat: "p99", Of: "health", Op: "<", Value: 3, Baseline: true}},
		{in: "error_rate < 2x baseline", err: "error_rate cannot be a multiple of the baseline"},
		{in: "latency < 1s", err: "latency needs a statistic"},
		{in: "latency p99 = 1s", err: "want a comparison"},
		{in: "error_rate < 2", err: "takes a percentage"},
		{in: "throughput > 5", err: "takes a rate"},
		{in: "error_rate < 1% for", err: "'for' needs a positive duration"},
		{in: "error_rate < 1% during 5s", err: `unexpected "during"`},
		{in: "", err: "empty condition"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := experiment.ParseCondition(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseCondition(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCondition(%q): %v", tt.in, err)
			}
			tt.want.Text = tt.in
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCondition(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestConditionHolds(t *testing.T) {
	c, _ := experiment.ParseCondition("latency p99 < 3x baseline")
	if !c.Holds(0.29, 0.1) || c.Holds(0.31, 0.1) {
		t.Error("3x baseline of 100ms: 290ms must hold, 310ms must not")
	}
	c, _ = experiment.ParseCondition("error_rate >= 50%")
	if !c.Holds(0.5, 0) || c.Holds(0.49, 0) {
		t.Error("error_rate >= 50%: 0.5 must hold, 0.49 must not")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := experiment.Parse("fuzz.yaml", data, experiment.Options{})
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *experiment.Error
				if !errors.As(e, &pe) || pe.Pos.Line < 1 {
					t.Fatalf("problem without a place: %v", e)
				}
			}
			return
		}
		if x.Name == "" || len(x.Faults) == 0 || x.Inject <= 0 {
			t.Fatalf("accepted an experiment without name, faults or inject length: %+v", x)
		}
	})
}

func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{"error_rate < 2%", "latency p99 of a < 3x baseline for 5s", "throughput > 1/s", "latency max >= 1h",
		"probe_success of health < 90% for 5s", "probe_latency p99 of health < 3x baseline"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := experiment.ParseCondition(s)
		if err == nil && (c.Metric == "" || c.Op == "") {
			t.Fatalf("ParseCondition(%q) = %+v without metric or op", s, c)
		}
	})
}

func TestReadyPods(t *testing.T) {
	src := "name: r\ntargets: {web: {pods: {namespace: shop, selector: app=web}}}\nsteady_state: [\"ready_pods(app=web) >= 80%\", \"ready_pods(other/app=x) < 50%\"]\ninject: 1s\nfaults: [{name: k, target: web, pod_kill: {}}]\n"
	x, err := experiment.Parse("r.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := x.SteadyState[0].Probe, x.SteadyState[1].Probe
	if a.Kind != "ready_pods" || a.Namespace != "shop" || a.Selector != "app=web" || a.Expect != ">= 0.8" {
		t.Errorf("first: %+v", a)
	}
	if b.Namespace != "other" || b.Selector != "app=x" || b.Expect != "< 0.5" {
		t.Errorf("second: %+v", b)
	}
	bad := strings.Replace(src, "ready_pods(app=web) >= 80%", "ready_pods(app=web) >= 80", 1)
	if _, err := experiment.Parse("r.yaml", []byte(bad), experiment.Options{AllowNoStop: true}); err == nil || !strings.Contains(err.Error(), "r.yaml:3:") {
		t.Errorf("ready_pods without a percent: %v", err)
	}
}

// Plans, results and reports name a probe the same way, with everything
// it checks.
func TestProbeText(t *testing.T) {
	for _, tt := range []struct {
		p    experiment.Probe
		want string
	}{
		{experiment.Probe{Kind: "http", Method: "GET", URL: "http://127.0.0.1:8080/stats", Expect: "200", Body: `"lost":0`},
			`probe GET http://127.0.0.1:8080/stats expects 200 and body ~ "lost":0`},
		{experiment.Probe{Kind: "tcp", Address: "127.0.0.1:5432"}, "probe tcp 127.0.0.1:5432"},
		{experiment.Probe{Kind: "command", Command: []string{"pg_isready"}, Expect: "0"}, "probe command pg_isready exits 0"},
		{experiment.Probe{Kind: "prometheus", URL: "http://127.0.0.1:9090", Query: "up", Expect: "> 0"}, "probe prometheus http://127.0.0.1:9090: up > 0"},
		{experiment.Probe{Kind: "ready_pods", Namespace: "shop", Selector: "app=checkout", Expect: ">= 0.8"}, "ready_pods(shop/app=checkout) >= 80%"},
	} {
		if got := tt.p.Text(); got != tt.want {
			t.Errorf("Text() = %q, want %q", got, tt.want)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	src := `name: zones
network: {subnet: 198.18.42.0/24}
targets:
  db: {process: {command: [db, "{ip}:{port}"], network: isolated}}
  web:
    process: {command: [web, --db, "{db.ip}:{db.port}", --host, "{host.ip}"], instances: 2, network: isolated}
    tags: {zone: [a, b]}
faults:
  - {name: cut, target: web, select: {tags: {zone: a}}, partition: {to: {tags: {zone: b}}, reject: true}}
  - {name: lossy, target: web, packet_loss: {percent: 20, to: [db, "198.18.42.0/24:5432"], protocol: tcp}}
  - {name: one way, target: web, direction: upstream, packet_loss: {percent: 30, to: ":53"}}
stop_when: [probe_success of up < 50%]
steady_state: [{name: up, probe: "GET http://{web.addr}/"}]
inject: 5s
`
	x, err := experiment.Parse("zones.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Network.Subnet.String(); got != "198.18.42.0/24" {
		t.Errorf("subnet = %s", got)
	}
	if !x.Targets[0].Process.Isolated || !x.Targets[1].Process.Isolated || !x.UsesNetwork() {
		t.Errorf("isolated: %v %v", x.Targets[0].Process.Isolated, x.Targets[1].Process.Isolated)
	}
	want := []experiment.Action{
		experiment.Partition{To: experiment.NetTo{Tags: map[string]string{"zone": "b"}}, Reject: true},
		experiment.PacketLoss{Percent: 20, To: experiment.NetTo{Targets: []string{"db"}, Dests: []string{"198.18.42.0/24:5432"}}, Protocol: "tcp"},
		experiment.PacketLoss{Percent: 30, To: experiment.NetTo{Dests: []string{":53"}}, Protocol: "all"},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, x.Faults[i].Action); diff != "" {
			t.Errorf("faults[%d] (-want +got):\n%s", i, diff)
		}
	}
	if d := []string{x.Faults[0].Direction, x.Faults[1].Direction, x.Faults[2].Direction}; !slices.Equal(d, []string{"downstream", "both", "upstream"}) {
		t.Errorf("directions = %v, want packet loss both ways unless said", d)
	}
}

// A Prometheus off this machine, read by a stop condition or an alert in
// the steady state, is reach beyond loopback as a probe's is: named, so
// that a run asks for --allow-remote.
func TestOffLoopbackPrometheus(t *testing.T) {
	src := `name: remote
targets: {api: {proxy: {listen: "127.0.0.1:0", upstream: "127.0.0.1:1"}}}
stop_when:
  - {alert: Paging, prometheus: "http://192.0.2.7:9090"}
  - {prometheus: "http://127.0.0.1:9090", query: up, when: "< 1"}
steady_state:
  - {alert: Paging, prometheus: "http://192.0.2.8:9090"}
faults: [{name: slow, target: api, latency: {delay: 1ms}, duration: 1s}]
`
	x, err := experiment.Parse("remote.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(x.OffLoopback(), "; ")
	for _, want := range []string{"stop condition's prometheus http://192.0.2.7:9090", "probe http://192.0.2.8:9090"} {
		if !strings.Contains(got, want) {
			t.Errorf("OffLoopback = %q, want it to name %q", got, want)
		}
	}
	if strings.Contains(got, "127.0.0.1:9090") {
		t.Errorf("OffLoopback = %q names a Prometheus on loopback", got)
	}
}
