package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/journal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bin builds this example once per test.
func bin(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "featureflag")
	if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A fault family of one's own is reachable from an experiment file by its
// key, is journaled when it injects, and after the runner is killed with
// SIGKILL, the program's recover undoes it through its registry.
func TestCustomFamilyIsRecoveredAfterSIGKILL(t *testing.T) {
	b := bin(t)
	addr := freeAddr(t)
	service := exec.Command(b, "serve", "--listen", addr)
	if err := service.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = service.Process.Kill(); _ = service.Wait() })
	url := "http://" + addr
	ctx := context.Background()
	waitFor(t, "the service", func() bool { _, err := getFlag(ctx, url, "x"); return err == nil })
	if err := setFlag(ctx, url, "new-checkout", true); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "flag.yaml")
	src := fmt.Sprintf(`name: flag-off
faults:
  - name: new checkout off
    feature_flag: {url: %q, flag: new-checkout, value: false}
baseline: 200ms
inject: 60s
`, url)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	runner := exec.Command(b, "run", file)
	runner.Env = append(os.Environ(), "RUN_DIR="+dir)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runner.Process.Kill(); _ = runner.Wait() })
	waitFor(t, "the flag to be off", func() bool { v, err := getFlag(ctx, url, "new-checkout"); return err == nil && !v })
	_ = runner.Process.Kill() // SIGKILL: no rollback
	_ = runner.Wait()
	if v, _ := getFlag(ctx, url, "new-checkout"); v {
		t.Fatal("the flag came back without recover: the test proves nothing")
	}
	events, err := journal.ReadFile(filepath.Join(dir, "journal.jsonl"))
	if err != nil || len(journal.Pending(events)) != 1 || journal.Pending(events)[0].Undo.Kind != "feature_flag" {
		t.Fatalf("journal after SIGKILL: %v, pending %+v; want the flag's step, with its own undo kind", err, journal.Pending(events))
	}
	out, err := exec.Command(b, "recover", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "set flag new-checkout back to true") {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	if v, _ := getFlag(ctx, url, "new-checkout"); !v {
		t.Fatal("the flag is still off after recover")
	}
}

// A run that ends puts the flag back itself; a misspelt key of the
// family is reported at its place, as any other.
func TestCustomFamilyRunAndErrors(t *testing.T) {
	b := bin(t)
	addr := freeAddr(t)
	service := exec.Command(b, "serve", "--listen", addr)
	if err := service.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = service.Process.Kill(); _ = service.Wait() })
	url := "http://" + addr
	ctx := context.Background()
	waitFor(t, "the service", func() bool { _, err := getFlag(ctx, url, "x"); return err == nil })
	_ = setFlag(ctx, url, "f", true)
	dir := t.TempDir()
	file := filepath.Join(dir, "flag.yaml")
	src := fmt.Sprintf("name: short\nfaults:\n  - {name: off, feature_flag: {url: %q, flag: f, value: false}, duration: 300ms}\nbaseline: 100ms\nrecovery: 0s\n", url)
	_ = os.WriteFile(file, []byte(src), 0o644)
	cmd := exec.Command(b, "run", file)
	cmd.Env = append(os.Environ(), "RUN_DIR="+filepath.Join(dir, "run"))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASSED") {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if v, _ := getFlag(ctx, url, "f"); !v {
		t.Error("the flag is still off after the run")
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("name: bad\nfaults:\n  - name: off\n    feature_flag: {url: x, flg: f}\n    duration: 1s\n"), 0o644)
	out, err := exec.Command(b, "run", bad).CombinedOutput()
	for _, want := range []string{`bad.yaml:4:28: faults[0].feature_flag.flg: unknown field (did you mean "flag"?)`, `faults[0].feature_flag.url: want the service's http:// URL`} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("run of a bad file: %v, output lacks %q:\n%s", err, want, out)
		}
	}
}
