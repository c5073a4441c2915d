// Package report turns a run directory into what people read: a
// self-contained HTML report with timelines (report.html), JUnit XML for CI
// (junit.xml), a Markdown summary for pull requests (summary.md), and a
// side-by-side comparison of two runs (compare.html).
//
// Reports read the run directory only (result.json, samples.jsonl,
// journal.jsonl), never the experiment file or a live target, so a run
// copied from CI renders the same anywhere.
package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/record"
)

// Run is a run directory as read back.
type Run struct {
	Dir     string
	Result  record.Result
	Samples []record.Sample
	Events  []journal.Event
	// Complete is false when the run never wrote result.json (its runner
	// was killed): Result is then rebuilt from the journal.
	Complete bool
}

// Incomplete is the verdict of a run that did not finish.
const Incomplete = "INCOMPLETE"

// Load reads a run directory.
func Load(dir string) (*Run, error) {
	r := &Run{Dir: dir}
	events, err := journal.ReadFile(filepath.Join(dir, "journal.jsonl"))
	var damaged *journal.DamagedError
	if errors.As(err, &damaged) {
		err = nil // the report shows what the readable lines say
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: not a run directory (no journal.jsonl)", dir)
		}
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "journal.jsonl"), err)
	}
	r.Events = events
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &r.Result); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "result.json"), err)
		}
		r.Complete = true
	case errors.Is(err, os.ErrNotExist):
		r.Result = fromJournal(events)
	default:
		return nil, err
	}
	if r.Samples, err = readSamples(filepath.Join(dir, "samples.jsonl")); err != nil {
		return nil, err
	}
	return r, nil
}

func readSamples(path string) ([]record.Sample, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record.Sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var s record.Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return out, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// fromJournal rebuilds what it can of a result from the journal of a run
// that did not finish.
func fromJournal(events []journal.Event) record.Result {
	res := record.Result{Verdict: Incomplete, Vars: map[string]string{}, Checks: []record.CheckRecord{}, Faults: []record.FaultRecord{}}
	res.Reasons = []string{"the run did not finish (its journal has no run_end): 'faultline recover DIR' undoes what it left"}
	var last time.Time
	byID := map[string]int{}   // intent ID: index in res.Faults
	byName := map[string]int{} // fault name: index in res.Faults
	open := map[string]bool{}  // intents not undone yet
	for _, e := range events {
		last = e.Time
		switch e.Type {
		case journal.RunStart:
			res.Name, res.Started = e.Name, record.Stamp(e.Time)
			if e.File != "" { // the typed fields; older journals have the message only
				res.File, res.Seed = e.File, e.Seed
				continue
			}
			for _, kv := range strings.Fields(e.Message) {
				if k, v, ok := strings.Cut(kv, "="); ok && k == "file" {
					res.File = v
				} else if ok && k == "seed" {
					fmt.Sscan(v, &res.Seed) //nolint:errcheck
				}
			}
		case journal.Phase:
			if n := len(res.Phases); n > 0 {
				res.Phases[n-1].End = record.Stamp(e.Time)
			}
			res.Phases = append(res.Phases, record.PhaseRecord{Name: e.Name, Start: record.Stamp(e.Time)})
		case journal.Intent:
			if e.Name == "" || e.Launches() {
				continue
			}
			i, seen := byName[e.Name] // a fault can take several steps
			if !seen {
				at := record.Stamp(e.Time)
				i = len(res.Faults)
				byName[e.Name] = i
				res.Faults = append(res.Faults, record.FaultRecord{Name: e.Name, InjectedAt: &at, Hit: []string{}, Evidence: []string{}})
			}
			if e.Message != "" {
				res.Faults[i].Hit = append(res.Faults[i].Hit, e.Message)
			}
			byID[e.ID], open[e.ID] = i, true
		case journal.Undone, journal.Failed:
			i, ok := byID[e.ID]
			if !ok { // a launched process, not a fault
				continue
			}
			delete(open, e.ID)
			if e.Type == journal.Undone && strings.HasPrefix(e.Message, "recover: ") {
				res.Faults[i].Evidence = append(res.Faults[i].Evidence, e.Message)
			}
			closeFault(&res, i, byID, open, e.Time)
		case journal.RunEnd:
			if e.Message == "recovered" {
				res.Reasons = []string{"the run did not finish: its runner was stopped; 'faultline recover' undid what it left at " + e.Time.UTC().Format(time.RFC3339)}
				// What had no undo (a toxic on a proxy inside the runner)
				// ended with the record.
				for _, i := range byID {
					if res.Faults[i].RevertedAt == nil {
						at := record.Stamp(e.Time)
						res.Faults[i].RevertedAt = &at
					}
				}
			}
		}
	}
	if n := len(res.Phases); n > 0 && time.Time(res.Phases[n-1].End).IsZero() {
		res.Phases[n-1].End = record.Stamp(last)
	}
	res.Ended = record.Stamp(last)
	return res
}

// closeFault marks fault i reverted at t once none of its steps is open.
func closeFault(res *record.Result, i int, byID map[string]int, open map[string]bool, t time.Time) {
	for id := range open {
		if byID[id] == i {
			return
		}
	}
	at := record.Stamp(t)
	res.Faults[i].RevertedAt = &at
}

// WriteAll writes report.html, junit.xml and summary.md into the run
// directory.
func (r *Run) WriteAll() error {
	for _, f := range []struct {
		name  string
		write func(*os.File) error
	}{
		{"report.html", func(f *os.File) error { return r.HTML(f) }},
		{"junit.xml", func(f *os.File) error { return r.JUnit(f) }},
		{"summary.md", func(f *os.File) error { return r.Markdown(f, "report.html") }},
	} {
		path := filepath.Join(r.Dir, f.name)
		tmp, err := os.CreateTemp(r.Dir, "."+f.name+"-*")
		if err != nil {
			return err
		}
		err = f.write(tmp)
		if err == nil {
			err = tmp.Chmod(0o644)
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// since is t in seconds after the run started.
func (r *Run) since(t record.Stamp) float64 {
	return time.Time(t).Sub(time.Time(r.Result.Started)).Seconds()
}

// phase returns the span of a phase in seconds since the start.
func (r *Run) phase(name string) (from, to float64, ok bool) {
	for _, p := range r.Result.Phases {
		if p.Name == name {
			return r.since(p.Start), r.since(p.End), true
		}
	}
	return 0, 0, false
}

// duration is the run's length in seconds.
func (r *Run) duration() float64 { return r.since(r.Result.Ended) }

// Replay is the command that runs the experiment again with the same
// random choices.
func (r *Run) Replay() string { return ReplayCommand(r.Result) }

// ReplayCommand is the command that runs res's experiment again with the
// same seed and variables.
func ReplayCommand(res record.Result) string {
	if res.Replay != "" {
		return res.Replay
	}
	var b strings.Builder
	fmt.Fprintf(&b, "faultline run %s --seed %d", shellQuote(res.File), res.Seed)
	for _, k := range sortedKeys(res.Vars) {
		b.WriteString(" --var " + shellQuote(k+"="+res.Vars[k]))
	}
	for _, f := range res.Flags {
		b.WriteString(" " + shellQuote(f))
	}
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
