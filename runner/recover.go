package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
)

// JournalOf returns the journal in a run directory: a run's, or a
// monkey's; "" if there is none.
func JournalOf(dir string) string {
	for _, name := range []string{"journal.jsonl", "monkey.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	return ""
}

// Recover undoes what a run that did not end cleanly left in place: every
// change its journal (journal.jsonl, or a monkey's monkey.jsonl) names and
// does not say undone, latest first, through reg's undo of its kind
// (builtin.Registry() for faultline's own families; a program with
// families of its own gives a registry with them). It says what it does
// on w, and returns how many changes could not be undone, and whether the
// run is done with: recovered, or nothing to recover (not while its
// runner lives, nor when an undo failed). Running it twice is harmless.
func Recover(ctx context.Context, dir string, reg *fault.Registry, w io.Writer) (failed int, done bool) {
	path := JournalOf(dir)
	if path == "" && filepath.IsAbs(dir) {
		if _, err := os.Stat(dir); err != nil {
			fmt.Fprintf(w, "%s: the run directory is gone: nothing can be recovered from it\n", dir)
		} else {
			// A run journals before it injects.
			fmt.Fprintf(w, "%s: no journal: the run had not begun to inject\n", dir)
		}
		return 0, true
	}
	if path == "" {
		fmt.Fprintf(w, "%s: no journal here\n", dir)
		return 1, false
	}
	events, err := journal.ReadFile(path)
	var damaged *journal.DamagedError
	switch {
	case errors.As(err, &damaged):
		// What the readable lines name is undone all the same; the run stays
		// on record, since what the others said is not known.
		fmt.Fprintf(w, "%s: %v: recovering what the other lines name\n", dir, err)
	case err != nil:
		fmt.Fprintf(w, "%s: %v\n", dir, err)
		return 1, false
	}
	if p := journal.Runner(events); p != nil && process.Alive(*p) {
		fmt.Fprintf(w, "%s: still running (pid %d): not touched; it rolls back by itself, or stop it first\n", dir, p.PID)
		return 0, false
	}
	if journal.Clean(events) && damaged == nil {
		fmt.Fprintf(w, "%s: ended cleanly, nothing to do\n", dir)
		return 0, true
	}
	jf, err := os.OpenFile(path, os.O_APPEND|os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(w, "%s: %v\n", dir, err)
		return 1, false
	}
	defer jf.Close()
	// A torn last line gets its end, so that what recover adds stays
	// lines of their own.
	if st, err := jf.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := jf.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			_, _ = jf.Write([]byte("\n"))
		}
	}
	// What recover did is added to the journal; a line it cannot add is
	// said, not fatal: each undo is idempotent, so a recover that finds
	// the step still pending does it again, harmlessly.
	note := func(e journal.Event) {
		e.Time = time.Now().UTC()
		b, err := json.Marshal(e)
		if err == nil {
			_, err = jf.Write(append(b, '\n'))
		}
		if err == nil {
			err = jf.Sync()
		}
		if err != nil {
			fmt.Fprintf(w, "%s: could not add to %s what recover did (%s %s): %v; the next recover does it again, harmlessly\n", dir, path, e.Type, e.ID, err)
		}
	}
	pending := journal.Pending(events)
	if len(pending) == 0 {
		fmt.Fprintf(w, "%s: nothing was left injected\n", dir)
	}
	for _, e := range pending {
		what, err := reg.Undo(ctx, e.Undo)
		if err != nil {
			failed++
			fmt.Fprintf(w, "%s: %s: could not undo: %v\n", dir, e.Name, err)
			note(journal.Event{Type: journal.Note, ID: e.ID, Message: "recover failed: " + err.Error()})
			continue
		}
		fmt.Fprintf(w, "%s: %s: %s\n", dir, e.Name, what)
		note(journal.Event{Type: journal.Undone, ID: e.ID, Message: "recover: " + what})
	}
	if damaged != nil {
		fmt.Fprintf(w, "%s: journal line(s) %v could not be read: what they named may still be in place; look at them in %s\n", dir, damaged.Lines, path)
		failed++
	}
	if failed == 0 {
		note(journal.Event{Type: journal.RunEnd, Message: "recovered"})
	}
	return failed, failed == 0
}
