package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/cli"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/record"
)

// needNetwork skips a test that needs root and nf_tables where the machine
// has neither; under CI=true a root machine must have every feature.
func needNetwork(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network faults need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run the tests as root")
	}
	if lacks := netfault.Lacks(context.Background()); len(lacks) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("root, but this kernel lacks: %v", lacks)
		}
		t.Skipf("this kernel lacks: %v", lacks)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (make test installs it)")
	}
}

// partitionFile is an experiment on a card processor in a network namespace
// of its own, probed by an unmodified curl from the host, and cut off from
// the host by a partition.
func partitionFile(t *testing.T, reject bool, inject string) string {
	t.Helper()
	src := fmt.Sprintf(`name: partition
targets:
  dep:
    process:
      command: ["{self}", shop, payments, --listen, "{ip}:{port}"]
      ready: http://{dep.addr}/health
      network: isolated
steady_state:
  - name: curl
    probe: {command: [curl, -sS, -o, /dev/null, -m, "0.5", "http://{dep.addr}/health"]}
baseline: 2s
inject: %s
faults:
  - name: cut off
    target: dep
    partition: {to: "{host.ip}", reject: %v}
recovery: 5s
`, inject, reject)
	path := filepath.Join(t.TempDir(), "partition.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runID reads a run's id from its journal.
func runID(t *testing.T, dir string) string {
	t.Helper()
	events, err := journal.ReadFile(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == journal.RunStart && e.Run != "" {
			return e.Run
		}
	}
	t.Fatalf("no run id in %s", dir)
	return ""
}

func assertNoLeftovers(t *testing.T, run string) {
	t.Helper()
	left, err := netfault.Leftovers(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		t.Errorf("left by run %s: %s", run, l)
	}
}

// TestPartitionIsolatedTarget: a partition makes an unmodified curl fail,
// refused at once with reject: true and timing out without; the probe
// holds before and after, and the run leaves no namespace, interface or
// table behind.
func TestPartitionIsolatedTarget(t *testing.T) {
	needNetwork(t)
	for _, tc := range []struct {
		reject bool
		want   string // what curl said during the partition
	}{{true, "exit status 7"}, {false, "exit status 28"}} {
		t.Run(fmt.Sprintf("reject=%v", tc.reject), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			cmd := exec.Command(binary(t), "run", partitionFile(t, tc.reject, "3s"), "--allow-no-stop", "--out", out)
			b, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != cli.ExitFailed {
				t.Fatalf("run = %d (%v), want %d (the probe fails during the partition)\n%s", code, err, cli.ExitFailed, b)
			}
			var res record.Result
			data, err := os.ReadFile(filepath.Join(out, "result.json"))
			if err != nil || json.Unmarshal(data, &res) != nil {
				t.Fatalf("result.json: %v", err)
			}
			held := map[string]bool{}
			var during []string
			for _, c := range res.Checks {
				held[c.Phase] = c.Held
				if c.Phase == "inject" {
					during = append(during, c.Detail)
				}
			}
			if !held["baseline"] || held["inject"] || !held["recovery"] {
				t.Errorf("probe held %v by phase, want baseline and recovery only\n%s", held, b)
			}
			if !strings.Contains(strings.Join(during, " "), tc.want) {
				t.Errorf("curl during the partition: %q, want %q", during, tc.want)
			}
			if len(res.Faults) != 1 || len(res.Faults[0].Hit) != 1 || !strings.Contains(res.Faults[0].Hit[0], "dep[0]") {
				t.Errorf("fault hit %+v, want dep[0]'s namespace", res.Faults)
			}
			events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
			if !journal.Clean(events) || len(journal.Pending(events)) != 0 {
				t.Errorf("journal not clean: %d pending", len(journal.Pending(events)))
			}
			assertNoLeftovers(t, runID(t, out))
		})
	}
}

// TestNetworkRecoverAfterSIGKILL kills the runner while its partition is
// in place: its namespace, veth, bridge and tables stay until faultline
// recover removes every one.
func TestNetworkRecoverAfterSIGKILL(t *testing.T) {
	needNetwork(t)
	out := filepath.Join(t.TempDir(), "run")
	runner := exec.Command(binary(t), "run", partitionFile(t, true, "60s"), "--allow-no-stop", "--out", out)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	journalPath := filepath.Join(out, "journal.jsonl")
	processtest.WaitFor(t, "the partition", func() bool {
		events, _ := journal.ReadFile(journalPath)
		for _, e := range events {
			if e.Type == journal.Intent && strings.HasPrefix(e.Message, "partition to ") {
				return len(journal.Pending(events)) > 0 && doneID(events, e.ID)
			}
		}
		return false
	})
	_ = runner.Process.Kill() // SIGKILL: no rollback
	_ = runner.Wait()
	id := runID(t, out)
	left, err := netfault.Leftovers(id)
	if err != nil || len(left) < 3 {
		t.Fatalf("after SIGKILL: %v left (%v); the test proves nothing without the namespace, veth and bridge", left, err)
	}
	code, stdout, stderr := run(t, "recover", out)
	if code != 0 || !strings.Contains(stdout, "removed") {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	assertNoLeftovers(t, id)
	if code, stdout, _ = run(t, "recover", out); code != 0 || !strings.Contains(stdout, "ended cleanly, nothing to do") {
		t.Fatalf("second recover = %d %q, want harmless", code, stdout)
	}
}

func doneID(events []journal.Event, id string) bool {
	for _, e := range events {
		if e.ID == id && e.Type == journal.Done {
			return true
		}
	}
	return false
}

// runNetwork runs an experiment file with the faultline binary and returns
// its result, failing the test on another exit code than want.
func runNetwork(t *testing.T, src string, want int) (record.Result, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	cmd := exec.Command(binary(t), "run", path, "--allow-no-stop", "--out", out)
	b, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != want {
		t.Fatalf("run = %d (%v), want %d\n%s", code, err, want, b)
	}
	var res record.Result
	data, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil || json.Unmarshal(data, &res) != nil {
		t.Fatalf("result.json: %v", err)
	}
	events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
	if !journal.Clean(events) || len(journal.Pending(events)) != 0 {
		t.Errorf("journal not clean: %d pending", len(journal.Pending(events)))
	}
	assertNoLeftovers(t, runID(t, out))
	return res, out
}

// logLines reads the lines "UNIXTIME VALUE" that a client loop wrote.
func logLines(t *testing.T, path string) (at []float64, vals []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ts float64
		var v string
		if _, err := fmt.Sscanf(l, "%f %s", &ts, &v); err == nil {
			at, vals = append(at, ts), append(vals, v)
		}
	}
	return at, vals
}

// TestInterceptLatency: curl, unmodified, in a namespace of its own, talks
// to a server by its address; an intercept target puts its connections
// through a proxy, and a latency toxic on it slows every request made
// while it is in place, and none before.
func TestInterceptLatency(t *testing.T) {
	needNetwork(t)
	res, out := runNetwork(t, `name: intercept
targets:
  web:
    process:
      command: ["{self}", shop, payments, --listen, "{ip}:{port}"]
      ready: http://{web.addr}/health
      network: isolated
  client:
    process:
      command: [sh, -c, 'while :; do s=$(date +%s.%N); curl -s -o /dev/null -m 5 -w "%{time_total}\n" http://{web.addr}/health | sed "s/^/$s /" >> {run_dir}/curl.log; sleep 0.1; done']
      network: isolated
  web-path:
    intercept: {from: client, to: web}
baseline: 2s
faults:
  - name: slow
    target: web-path
    latency: {delay: 400ms}
    duration: 3s
recovery: 2s
`, cli.ExitPassed)
	at, vals := logLines(t, filepath.Join(out, "curl.log"))
	f := res.Faults[0]
	if f.InjectedAt == nil || f.RevertedAt == nil {
		t.Fatalf("fault %+v not injected and reverted", f)
	}
	from, to := float64(time.Time(*f.InjectedAt).UnixNano())/1e9, float64(time.Time(*f.RevertedAt).UnixNano())/1e9
	var before, during int
	for i, ts := range at {
		var took float64
		_, _ = fmt.Sscanf(vals[i], "%f", &took)
		switch {
		case ts+took < from: // began and ended before the fault
			before++
			if took >= 0.4 {
				t.Errorf("a request before the fault took %.3fs", took)
			}
		case ts > from+0.2 && ts+took < to-0.2: // wholly within it, with a margin for the stamps
			during++
			if took < 0.4 {
				t.Errorf("a request %.3fs into the fault (of %.3fs) took %.3fs, under the 400 ms toxic: not intercepted", ts-from, to-from, took)
			}
		}
	}
	if before == 0 || during == 0 {
		t.Fatalf("%d requests before the fault and %d during it: the test proves nothing\n%v", before, during, vals)
	}
	if len(f.Hit) == 0 || !strings.Contains(f.Hit[0], "web-path") {
		t.Errorf("hit %v", f.Hit)
	}
}

// TestDNSIntercept: getent, unmodified, resolves through the system's
// resolver; a dns target intercepting its namespace answers, and a rule
// makes the name fail for the fault's window.
func TestDNSIntercept(t *testing.T) {
	needNetwork(t)
	_, out := runNetwork(t, `name: dns-intercept
targets:
  client:
    process:
      command: [sh, -c, 'while :; do s=$(date +%s.%N); if getent hosts payments.shop.test >/dev/null; then r=ok; else r=fail; fi; echo "$s $r" >> {run_dir}/getent.log; sleep 0.1; done']
      network: isolated
  resolver:
    dns:
      records: {payments.shop.test: 198.18.0.9}
      intercept: {from: client}
baseline: 2s
faults:
  - name: name fails
    target: resolver
    dns: {rules: ["payments.*=SERVFAIL"]}
    duration: 2s
recovery: 2s
`, cli.ExitPassed)
	_, vals := logLines(t, filepath.Join(out, "getent.log"))
	// ok first (the record), fail during the rule, ok again after it.
	runs := []string{}
	for _, v := range vals {
		if len(runs) == 0 || runs[len(runs)-1] != v {
			runs = append(runs, v)
		}
	}
	if strings.Join(runs, ",") != "ok,fail,ok" {
		t.Errorf("getent answered %v, want ok, then fail during the rule, then ok", runs)
	}
}

// netIntents counts the journal's network changes (bridge, namespace,
// veth, tables, the partition's chains), in the order journaled, and says
// whether the partition's is among them.
func netIntents(events []journal.Event) (n int, partition bool) {
	for _, e := range events {
		if e.Type == journal.Intent && e.Undo != nil && e.Undo.Kind == "netfault" {
			n++
			partition = partition || strings.HasPrefix(e.Message, "partition to ")
		}
	}
	return n, partition
}

// TestNetworkRecoverAtEveryStep: a runner killed with SIGKILL as soon as
// its journal shows its k-th network change, for every k up to the
// partition's (so at each step, in flight or just made), leaves nothing
// that recover does not remove.
func TestNetworkRecoverAtEveryStep(t *testing.T) {
	needNetwork(t)
	file := partitionFile(t, true, "60s")
	for k := 1; ; k++ {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("run-%d", k))
		runner := exec.Command(binary(t), "run", file, "--allow-no-stop", "--out", out)
		if err := runner.Start(); err != nil {
			t.Fatal(err)
		}
		var partition bool
		processtest.WaitFor(t, fmt.Sprintf("network change %d", k), func() bool {
			events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
			var n int
			n, partition = netIntents(events)
			return n >= k
		})
		_ = runner.Process.Kill() // SIGKILL: no rollback
		_ = runner.Wait()
		id := runID(t, out)
		if code, stdout, stderr := run(t, "recover", out); code != 0 {
			t.Fatalf("killed at network change %d: recover = %d\n%s\n%s", k, code, stdout, stderr)
		}
		assertNoLeftovers(t, id)
		if t.Failed() || partition {
			t.Logf("killed at each of %d network changes, recovered every time", k)
			return
		}
	}
}
