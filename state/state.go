// Package state is faultline's state directory: the runs in progress,
// each registered with its pid, start time and output directory, and the
// kill switch ("halt") that every run watches.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
)

// Dir returns the state directory: flag if given, else
// $FAULTLINE_STATE_DIR, else $XDG_STATE_HOME/faultline, else
// ~/.local/state/faultline.
func Dir(flag string) string {
	switch {
	case flag != "":
		return flag
	case os.Getenv("FAULTLINE_STATE_DIR") != "":
		return os.Getenv("FAULTLINE_STATE_DIR")
	case os.Getenv("XDG_STATE_HOME") != "":
		return filepath.Join(os.Getenv("XDG_STATE_HOME"), "faultline")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".local", "state", "faultline")
}

// Run is a registered run.
type Run struct {
	Name    string       `json:"name"`
	Out     string       `json:"out"`
	Runner  journal.Proc `json:"runner"`
	Started time.Time    `json:"started"`
}

// Alive reports whether the run's process is still the one that
// registered.
func (r Run) Alive() bool { return process.Alive(r.Runner) }

func runsDir(dir string) string { return filepath.Join(dir, "runs") }

// Register records a run in progress; the returned func removes it.
func Register(dir string, r Run) (func(), error) {
	if err := os.MkdirAll(runsDir(dir), 0o755); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(runsDir(dir), strconv.Itoa(r.Runner.PID)+"-"+strconv.FormatUint(r.Runner.Start, 10)+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	return func() { _ = os.Remove(path) }, nil
}

// Runs lists the registered runs, live or not (a runner killed with
// SIGKILL leaves its registration behind).
func Runs(dir string) ([]Run, error) {
	entries, err := os.ReadDir(runsDir(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Run
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(runsDir(dir), e.Name()))
		if err != nil {
			continue
		}
		var r Run
		if json.Unmarshal(b, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Forget removes a run's registration.
func Forget(dir string, r Run) {
	_ = os.Remove(filepath.Join(runsDir(dir), strconv.Itoa(r.Runner.PID)+"-"+strconv.FormatUint(r.Runner.Start, 10)+".json"))
}

func haltPath(dir string) string { return filepath.Join(dir, "halt") }

// Halt engages the kill switch, with a reason.
func Halt(dir, reason string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(haltPath(dir), []byte(fmt.Sprintf("%s %s\n", time.Now().UTC().Format(time.RFC3339), reason)), 0o644)
}

// Resume releases the kill switch.
func Resume(dir string) error {
	err := os.Remove(haltPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Halted reports whether the kill switch is engaged, and its note.
func Halted(dir string) (bool, string) {
	b, err := os.ReadFile(haltPath(dir))
	return err == nil, string(b)
}

// pollInterval is how often Watch looks for the kill switch.
const pollInterval = 100 * time.Millisecond

// Watch returns a context cancelled when the kill switch is engaged (or
// parent ends); its cause (context.Cause) is then "halted: NOTE". It looks
// ten times a second, so a halt lands within 1 s.
func Watch(parent context.Context, dir string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	halt := func() bool {
		halted, note := Halted(dir)
		if halted {
			cancel(fmt.Errorf("halted: %s", strings.TrimSpace(note)))
		}
		return halted
	}
	if halt() { // halted already: no need to wait for the first poll
		return ctx, func() { cancel(nil) }
	}
	go func() {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if halt() {
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}
