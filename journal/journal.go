package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faultline/faultline/process"
)

// Event types.
const (
	RunStart = "run_start"
	Phase    = "phase"
	// Intent comes before a change is made: it carries the Undo that
	// reverses it. Done follows once the change is made; Undone once it is
	// reversed; Failed when making it failed.
	Intent = "intent"
	Done   = "done"
	Undone = "undone"
	Failed = "failed"
	// Unknown follows an Intent whose change may or may not have been made
	// (a call that timed out or was interrupted in flight, a command that
	// failed halfway): it stays open, so that rollback and recover undo it
	// as if it had been made. Undos are idempotent for that reason.
	Unknown = "unknown"
	Note    = "note"
	RunEnd  = "run_end"
)

// Event is one line of a journal.
type Event struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// ID links an Intent with its Done, Undone or Failed.
	ID      string `json:"id,omitempty"`
	Name    string `json:"name,omitempty"` // phase or fault name
	Undo    *Undo  `json:"undo,omitempty"`
	Message string `json:"message,omitempty"`
	// Runner is the process writing the journal, on run_start: recover
	// leaves alone a run whose runner is still alive.
	Runner *Proc `json:"runner,omitempty"`
	// File, Seed and Run are the experiment file, the seed and the run's
	// id, on run_start (older journals say them in Message only).
	File string `json:"file,omitempty"`
	Seed int64  `json:"seed,omitempty"`
	Run  string `json:"run,omitempty"`
	// Launch, on an Intent, says the step launches a target's process
	// rather than injecting a fault (older journals name such steps
	// "launch TARGET[i]").
	Launch *Launch `json:"launch,omitempty"`
}

// Launch names the instance of a target that a step launched.
type Launch struct {
	Target   string `json:"target"`
	Instance int    `json:"instance"`
}

// Launches reports whether an event launches a target's process, in
// this journal's words or an older one's.
func (e Event) Launches() bool {
	return e.Launch != nil || e.Type == Intent && strings.HasPrefix(e.Name, "launch ")
}

// Undo says how to reverse one change, with no state but itself.
type Undo struct {
	// Kind is "sigcont" (resume stopped processes), "kill" (stop
	// processes the run launched), "remove_toxic", "enable_proxy", "exec"
	// "remove_file" (a disk fill's file, Path), "scale" (set Resource Name
	// in Namespace back to Replicas) or "uncordon" (Node), the last two in
	// the cluster of Kubeconfig.
	Kind string `json:"kind"`
	Path string `json:"path,omitempty"`
	// Kubernetes: what to put back, and where.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Resource   string `json:"resource,omitempty"`
	Name       string `json:"name,omitempty"`
	Replicas   *int32 `json:"replicas,omitempty"`
	Node       string `json:"node,omitempty"`
	// Procs are processes, each with its start time so that a recycled
	// pid is never touched.
	Procs []Proc `json:"procs,omitempty"`
	// Group, with "kill", says each of Procs leads a process group of its
	// own, all of which is stopped (children that outlived the leader too).
	Group bool `json:"group,omitempty"`
	// API, Proxy, Toxic and Token name a toxic or proxy of a
	// Toxiproxy-compatible API.
	API   string `json:"api,omitempty"`
	Proxy string `json:"proxy,omitempty"`
	Toxic string `json:"toxic,omitempty"`
	Token string `json:"-"` // never on disk: recover takes it from the environment
	// Command is run by "exec".
	Command []string `json:"command,omitempty"`
	// Data is what a family registered from outside faultline needs to
	// undo a change of its own kind, as it wrote it.
	Data json.RawMessage `json:"data,omitempty"`
}

// Proc is a process with its start time (package process).
type Proc = process.Proc

// Writer appends events to a journal file.
type Writer struct {
	mu sync.Mutex
	f  *os.File
}

// Create creates a new journal at path; it fails if one is there.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &Writer{f: f}, nil
}

// Append writes e (stamped now if its Time is zero) and syncs it to disk
// before returning.
func (w *Writer) Append(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Close closes the file.
func (w *Writer) Close() error { return w.f.Close() }

// DamagedError says which lines of a journal could not be read (a short
// write on a full disk, say). Read returns it with every event it could
// read, so that what those name can still be undone.
type DamagedError struct {
	Lines []int
	Err   error // the first line's
}

func (e *DamagedError) Error() string {
	lines := make([]string, len(e.Lines))
	for i, l := range e.Lines {
		lines[i] = strconv.Itoa(l)
	}
	return fmt.Sprintf("journal line(s) %s unreadable: %v", strings.Join(lines, ", "), e.Err)
}

func (e *DamagedError) Unwrap() error { return e.Err }

// Read reads every event of a journal. A last line cut short (the runner
// was killed while writing it) is left out; bad lines elsewhere are
// skipped and named in a *DamagedError, returned with the events that
// could be read.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	var damaged *DamagedError
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		complete := err == nil
		if err != nil && err != io.EOF {
			return out, err
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			var e Event
			if jerr := json.Unmarshal(b, &e); jerr != nil {
				if !complete {
					break // torn final line
				}
				if damaged == nil {
					damaged = &DamagedError{Err: jerr}
				}
				damaged.Lines = append(damaged.Lines, line)
			} else {
				out = append(out, e)
			}
		}
		if !complete {
			break
		}
	}
	if damaged != nil {
		return out, damaged
	}
	return out, nil
}

// ReadFile reads the journal at path.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f)
}

// Open returns the Intents not followed by Undone or Failed, in the order
// they were made: what is in place now, if the runner is alive. An Intent
// without Done is open too, since the change may have been made just
// before the runner died.
func Open(events []Event) []Event {
	open := map[string]int{}
	var intents []Event
	for _, e := range events {
		switch e.Type {
		case Intent:
			open[e.ID] = len(intents)
			intents = append(intents, e)
		case Undone, Failed:
			delete(open, e.ID)
		}
	}
	var out []Event
	for i, e := range intents {
		if _, ok := open[e.ID]; ok {
			out = append(out, intents[i])
		}
	}
	return out
}

// Pending returns the open Intents that have an Undo, latest first: what
// recover undoes, in the order to undo it. (Those without one, a toxic on
// a proxy inside the runner, ended with it.)
func Pending(events []Event) []Event {
	var out []Event
	open := Open(events)
	for i := len(open) - 1; i >= 0; i-- {
		if open[i].Undo != nil {
			out = append(out, open[i])
		}
	}
	return out
}

// Runner returns the process that wrote the journal, from its run_start.
func Runner(events []Event) *Proc {
	for _, e := range events {
		if e.Type == RunStart {
			return e.Runner
		}
	}
	return nil
}

// Clean reports whether the journal ends with run_end.
func Clean(events []Event) bool {
	return len(events) > 0 && events[len(events)-1].Type == RunEnd
}
