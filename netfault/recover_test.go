package netfault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatelessUndoAfterSIGKILL(t *testing.T) {
	r := newRun(t)
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	cmd := exec.Command(self(t), "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETFAULT_TEST_CRASH="+journal, "NETFAULT_TEST_RUN="+r.id)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the runner did not get ready: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the runner did not get ready within 30 s")
	}
	_ = cmd.Process.Kill() // SIGKILL: nothing of its own is undone
	_ = cmd.Wait()

	data, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	var ops []Op
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var op Op
		if err := json.Unmarshal([]byte(line), &op); err != nil {
			t.Fatalf("journal line %q: %v", line, err)
		}
		ops = append(ops, op)
	}
	var kinds []Kind
	for _, op := range ops {
		kinds = append(kinds, op.Kind)
	}
	want := []Kind{KindBridge, KindNamespace, KindVeth, KindNamespace, KindVeth, KindTable, KindTable, KindChains, KindChains, KindChains}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Fatalf("journal kinds (-want +got):\n%s", diff)
	}
	// What the runner left is there until the undo.
	if got := tablesIn(t, ops[len(ops)-1].NS); !contains(got, TableName(r.id)) {
		t.Fatalf("tables in the first instance after the kill: %v, want %s", got, TableName(r.id))
	}
	for i := len(ops) - 1; i >= 0; i-- {
		if err := Undo(context.Background(), ops[i]); err != nil {
			t.Errorf("Undo(%s) = %v", ops[i], err)
		}
	}
	assertClean(t, r.id)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
