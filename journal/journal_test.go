package journal_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/faultline/faultline/journal"
)

func TestRoundTrip(t *testing.T) {
	// Property: any sequence of events written reads back the same.
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		path := filepath.Join(t.TempDir(), "journal.jsonl")
		w, err := journal.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		var want []journal.Event
		for range r.IntN(20) {
			e := journal.Event{
				Time: time.Unix(r.Int64N(1<<33), r.Int64N(1e9)).UTC(),
				Type: []string{journal.Intent, journal.Done, journal.Undone, journal.Note}[r.IntN(4)],
				ID:   string(rune('a' + r.IntN(26))),
				Name: strings.Repeat("x\"\n ü", r.IntN(3)),
			}
			if r.IntN(2) == 0 {
				e.Undo = &journal.Undo{Kind: "sigcont", Procs: []journal.Proc{{PID: r.IntN(1 << 22), Start: r.Uint64()}}}
			}
			if err := w.Append(e); err != nil {
				t.Fatal(err)
			}
			want = append(want, e)
		}
		w.Close()
		got, err := journal.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("trial %d: read back differs (-want +got):\n%s", trial, diff)
		}
	}
}

func TestTornLastLineIsLeftOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	w, _ := journal.Create(path)
	_ = w.Append(journal.Event{Type: journal.RunStart})
	w.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString(`{"type":"inte`)
	f.Close()
	got, err := journal.ReadFile(path)
	if err != nil || len(got) != 1 || got[0].Type != journal.RunStart {
		t.Fatalf("ReadFile = %+v, %v; want the one whole event", got, err)
	}
}

// TestBadLinesAreNamedAndTheRestRead: a damaged line in the middle is an
// error naming it, and every other line is still read, so that what they
// name can be undone.
func TestBadLinesAreNamedAndTheRestRead(t *testing.T) {
	got, err := journal.Read(strings.NewReader("{\"type\":\"run_start\"}\nnot json\n{\"type\":\"intent\",\"id\":\"1\"}\n{\"ty\n{\"type\":\"run_end\"}\n"))
	var damaged *journal.DamagedError
	if !errors.As(err, &damaged) || !slices.Equal(damaged.Lines, []int{2, 4}) || !strings.Contains(err.Error(), "line(s) 2, 4") {
		t.Fatalf("Read error = %v, want a DamagedError naming lines 2 and 4", err)
	}
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{journal.RunStart, journal.Intent, journal.RunEnd}) {
		t.Fatalf("Read events = %v, want the three readable ones", types)
	}
}

func TestPending(t *testing.T) {
	undo := &journal.Undo{Kind: "sigcont"}
	events := []journal.Event{
		{Type: journal.RunStart},
		{Type: journal.Intent, ID: "1", Undo: undo},
		{Type: journal.Done, ID: "1"},
		{Type: journal.Intent, ID: "2", Undo: undo},
		{Type: journal.Done, ID: "2"},
		{Type: journal.Undone, ID: "2"},
		{Type: journal.Intent, ID: "3", Undo: undo}, // died before Done: may have happened
		{Type: journal.Intent, ID: "4", Undo: undo},
		{Type: journal.Failed, ID: "4"},
	}
	var ids []string
	for _, e := range journal.Pending(events) {
		ids = append(ids, e.ID)
	}
	if diff := cmp.Diff([]string{"3", "1"}, ids); diff != "" {
		t.Fatalf("Pending (-want +got):\n%s", diff)
	}
	if journal.Clean(events) || !journal.Clean(append(events, journal.Event{Type: journal.RunEnd})) {
		t.Fatal("Clean must be true only when the last event is run_end")
	}
}

func TestCreateRefusesAnExistingJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	w, err := journal.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := journal.Create(path); err == nil {
		t.Fatal("Create overwrote a journal")
	}
}
