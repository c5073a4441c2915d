package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/load"
	"github.com/faultline/faultline/plan"
	"github.com/faultline/faultline/probe"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/record"
	"github.com/faultline/faultline/target"
)

// Options change how a run goes.
type Options struct {
	// OutDir is the run directory, created; it must not hold a journal.
	OutDir string
	// Vars are the --var values, recorded in the result.
	Vars map[string]string
	// Flags are the command-line flags that change what runs
	// (--allow-no-stop, --allow-remote), recorded in the result so that
	// its replay command runs the same experiment.
	Flags []string
	// Replay, when not empty, is the command that replays the run, as the
	// result records it; empty means "faultline run FILE --seed N" with
	// the vars and flags.
	Replay string
	// Story, when set, is recorded in the result and told in the reports.
	Story *record.Story
	// Progress, if not nil, gets a line per tick.
	Progress io.Writer
	// Tick is how often probes run and stop conditions are checked; zero
	// means 1 s.
	Tick time.Duration
	// RecoveryWindow is how long the steady state must hold for the system
	// to count as recovered; zero means 5 s.
	RecoveryWindow time.Duration
	// Prefix goes before every progress line ("[cache-dies/fragile] ").
	Prefix string
	// Live says Progress is a terminal: the line of each tick is redrawn in
	// place, and only events (phases, faults injected and reverted) stay.
	Live bool
	// Faults are the fault families the run can inject; nil means
	// builtin.Registry(), faultline's own.
	Faults *fault.Registry
	// Probes run the steady state's probes; nil means builtin.Prober().
	Probes *probe.Prober
	// Hurry, closed after ctx ends (a second Ctrl-C), makes the run end as
	// soon as every fault is reverted: it stops waiting for the traffic's
	// requests in flight (they end by their timeout, in the background)
	// and kills what it launched at once instead of after a grace period.
	Hurry <-chan struct{}
	// OnSample, if not nil, is given each tick's sample as it is written to
	// samples.jsonl ('faultline run --metrics-listen' serves them).
	OnSample func(Sample)
}

type run struct {
	// abort ends the run's context (a goroutine panicked): rolled back
	// like an interrupt.
	abort   context.CancelCauseFunc
	x       *experiment.Experiment
	fx      *experiment.Experiment // x with references filled in, once setup knows the addresses
	opts    Options
	sayMu   sync.Mutex
	shown   bool // a tick's line is on a live terminal, without its newline
	id      string
	j       *journal.Writer
	jmu     sync.Mutex
	seq     int
	lostMu  sync.Mutex
	lost    int   // journal lines that could not be written
	lostErr error // the first one's error
	rand    *rand.Rand
	reg     *fault.Registry
	targets *target.Set
	procLog io.Writer
	col     *collector
	faults  []*faultRun
	res     *Result
	prober  *probe.Prober
	samples *json.Encoder // samples.jsonl, a line per tick
	exitsMu sync.Mutex
	exits   []string                  // launched processes that exited on their own
	traffic []experiment.Request      // the traffic's requests, addresses filled in
	probes  map[int]*experiment.Probe // steady_state index → probe, addresses filled in
	// probeFailures are the probes that failed on the last tick, with why,
	// for the live line.
	probeFailures []string
	// probeIndex is each named probe's index in steady_state.
	probeIndex map[string]int
	// windows are the plan's schedule of the faults, in file order.
	windows []plan.Window
}

// newRunID names a run in the journal and in what it creates on the host
// (network namespaces, bridges, nft tables): the time it started and four
// random characters, so that two runs started in the same second, with
// the same seed, in one process or in two, do not share names. Eight
// characters at most, which netfault uses in interface names as they are.
func newRunID(now time.Time) string {
	return strconv.FormatInt(now.Unix()%1_000_000, 36) + fmt.Sprintf("%04s", strconv.FormatUint(rand.Uint64N(36*36*36*36), 36))
}

// Run carries out a plan's experiment and returns its result, also written to
// OutDir/result.json. Cancelling ctx (Ctrl-C) aborts the run: every fault
// is reverted and everything launched is stopped before Run returns. The
// error is for a run that could not be recorded at all; a run that could
// not start has verdict ERROR.
func Run(ctx context.Context, p *plan.Plan, opts Options) (res *Result, err error) {
	x, seed := p.Experiment(), p.Seed()
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.Probes == nil {
		opts.Probes = builtin.Prober()
	}
	if opts.Faults == nil {
		opts.Faults = builtin.Registry()
	}
	if opts.RecoveryWindow <= 0 {
		opts.RecoveryWindow = 5 * time.Second
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	j, err := journal.Create(filepath.Join(opts.OutDir, "journal.jsonl"))
	if err != nil {
		return nil, err
	}
	defer j.Close()
	logf, err := os.Create(filepath.Join(opts.OutDir, "processes.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	samplesf, err := os.Create(filepath.Join(opts.OutDir, "samples.jsonl"))
	if err != nil {
		return nil, err
	}
	defer samplesf.Close()
	r := &run{
		x: x, opts: opts, j: j, procLog: logf,
		id:      newRunID(time.Now()),
		rand:    rand.New(rand.NewPCG(uint64(seed), 0xfa17)),
		samples: json.NewEncoder(samplesf),
		reg:     opts.Faults,
		windows: p.Windows(),
		col:     newCollector(),
		prober:  opts.Probes,
		res: &Result{Name: x.Name, File: x.File, Hypothesis: x.Hypothesis, Seed: seed, Vars: opts.Vars, Flags: opts.Flags, Replay: opts.Replay, Story: opts.Story,
			Started: Stamp(time.Now()), Reasons: []string{}, Checks: []CheckRecord{}, Faults: []FaultRecord{}, Traffic: []TrafficRecord{}},
	}
	if r.res.Vars == nil {
		r.res.Vars = map[string]string{}
	}
	r.probeIndex = map[string]int{}
	for i, c := range x.SteadyState {
		if c.Probe != nil && c.Probe.Name != "" {
			r.probeIndex[c.Probe.Name] = i
		}
	}
	r.targets = target.New(x, target.Env{Journal: r, NextID: r.nextID, Log: logf, Seed: seed, Guard: r.guard, Run: r.id,
		Progress: r.progressf,
		Exited: func(msg string) {
			r.progressf("%s", msg)
			r.exitsMu.Lock()
			r.exits = append(r.exits, msg)
			r.exitsMu.Unlock()
		}})
	self, _ := process.Identify(os.Getpid())
	started := r.journal(journal.Event{Type: journal.RunStart, Name: x.Name, Runner: &self, File: x.File, Seed: seed, Run: r.id,
		Message: fmt.Sprintf("file=%s seed=%d run=%s", x.File, seed, r.id)})

	// Whatever happens below, faults are reverted and what was launched is
	// stopped; a panic is turned into an ERROR verdict after that.
	defer func() {
		if p := recover(); p != nil {
			r.verdict(Error, fmt.Sprintf("internal error: %v", p))
		}
		r.rollback()
		r.teardown()
		r.finish()
		res, err = r.res, r.writeResult()
	}()
	// max_duration caps the run at run time too, setup included: a run
	// that reaches it is aborted and rolled back like an interrupted one.
	if x.MaxDuration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, x.MaxDuration, fmt.Errorf("the run reached its max_duration (%v)", x.MaxDuration))
		defer cancel()
	}
	ctx, r.abort = context.WithCancelCause(ctx)
	defer r.abort(nil)
	if started != nil {
		r.verdict(Error, "nothing was started: the journal cannot take the run's start, and what is not journaled cannot be recovered")
		return r.res, nil
	}
	r.execute(ctx)
	return r.res, nil
}

func (r *run) nextID() string {
	r.jmu.Lock()
	defer r.jmu.Unlock()
	r.seq++
	return strconv.Itoa(r.seq)
}

// journal appends an event; a journal that cannot be written stops
// injection, since what is not journaled cannot be recovered. Every line
// lost is counted, said at once the first time, and makes the verdict
// ERROR at the end (lostReason).
func (r *run) journal(e journal.Event) error {
	if err := r.j.Append(e); err != nil {
		r.lostMu.Lock()
		r.lost++
		first := r.lostErr == nil
		if first {
			r.lostErr = err
		}
		r.lostMu.Unlock()
		if first {
			r.progressf("%v: the lines it cannot take are lost to recover and report", err)
		}
		return err // the writer's errors say "journal: "
	}
	return nil
}

// lostReason says how many journal lines were lost, or "".
func (r *run) lostReason() string {
	r.lostMu.Lock()
	defer r.lostMu.Unlock()
	if r.lost == 0 {
		return ""
	}
	return fmt.Sprintf("the journal lost %d line(s), the first to %q: recover and report cannot see what they recorded", r.lost, strings.TrimPrefix(r.lostErr.Error(), "journal: "))
}

// Append journals an event, as fault.Journal and target.Journal have it.
func (r *run) Append(e journal.Event) error { return r.journal(e) }

func (r *run) verdict(v, reason string) {
	// The first verdict that is not PASSED stands; reasons add up.
	if r.res.Verdict == "" || r.res.Verdict == Passed {
		r.res.Verdict = v
	}
	if reason != "" {
		r.res.Reasons = append(r.res.Reasons, reason)
	}
}

func (r *run) enterPhase(name string) {
	now := time.Now()
	if n := len(r.res.Phases); n > 0 {
		r.res.Phases[n-1].End = Stamp(now)
	}
	r.res.Phases = append(r.res.Phases, PhaseRecord{Name: name, Start: Stamp(now)})
	r.col.setPhase(name, now)
	_ = r.journal(journal.Event{Type: journal.Phase, Name: name})
	r.progressf("phase %s", name)
}

func (r *run) progressf(format string, args ...any) {
	r.say(fmt.Sprintf(format, args...), false)
}

// say writes a progress line: an event, or the line of a tick (transient),
// which a live terminal shows in place until the next one.
func (r *run) say(line string, transient bool) {
	w := r.opts.Progress
	if w == nil {
		return
	}
	line = r.opts.Prefix + time.Now().Format("15:04:05") + " " + line
	r.sayMu.Lock()
	defer r.sayMu.Unlock()
	switch {
	case !r.opts.Live:
		fmt.Fprintln(w, line)
	case transient:
		fmt.Fprint(w, "\r\033[K"+line)
		r.shown = true
	default:
		if r.shown {
			fmt.Fprint(w, "\r\033[K")
			r.shown = false
		}
		fmt.Fprintln(w, line)
	}
}

// internalError is what ends a run when one of its goroutines panicked:
// the run is rolled back like an interrupted one, with verdict ERROR.
type internalError struct{ msg string }

func (e *internalError) Error() string { return "internal error: " + e.msg }

// guard runs fn, turning a panic into the end of the run (rolled back,
// verdict ERROR) instead of a crash with faults in place. Every goroutine
// the run starts runs under it.
func (r *run) guard(what string, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			err := &internalError{fmt.Sprintf("%s panicked: %v", what, p)}
			_ = r.journal(journal.Event{Type: journal.Note, Message: err.Error() + "\n" + string(debug.Stack())})
			r.abort(err)
		}
	}()
	fn()
}

// interruptedVerdict records the verdict of a run that ctx ended: ERROR
// if a goroutine of the run panicked, else ABORTED, with why.
func (r *run) interruptedVerdict(ctx context.Context, when, more string) {
	var ie *internalError
	if errors.As(context.Cause(ctx), &ie) {
		r.verdict(Error, ie.Error()+" "+when+"; every fault was rolled back")
		return
	}
	r.verdict(Aborted, interrupted(ctx, when)+more)
}

// interrupted says why ctx ended the run: its cause (a signal, a halt, a
// kill switch that could not be read), if it has one.
func interrupted(ctx context.Context, when string) string {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(cause, context.Canceled) {
		return "interrupted " + when
	}
	return "interrupted " + when + ": " + cause.Error()
}

// execute runs the phases up to recovery.
func (r *run) execute(ctx context.Context) {
	r.enterPhase("setup")
	if err := r.setup(ctx); err != nil {
		if ctx.Err() != nil {
			r.interruptedVerdict(ctx, "during setup", " (nothing was injected)")
			return
		}
		r.verdict(Error, "setup: "+err.Error())
		return
	}
	stopTraffic := r.startTraffic()
	defer stopTraffic()

	r.enterPhase("baseline")
	if !r.tickFor(ctx, r.x.Baseline, "baseline", nil, nil) {
		r.interruptedVerdict(ctx, "during the baseline", " (nothing was injected)")
		return
	}
	if held := r.judge("baseline"); !held {
		r.verdict(Error, "steady state did not hold before injection, so nothing was injected: "+r.broken("baseline"))
		return
	}
	if blind := r.blindStops(); blind != "" {
		r.verdict(Error, "a stop condition could not be evaluated in the baseline, so nothing was injected: "+blind)
		return
	}

	r.enterPhase("inject")
	completed, stopped, injectErr := r.injectPhase(ctx)
	if !completed && !stopped && injectErr == nil {
		// Revert at once, before the traffic winds down.
		r.enterPhase("rollback")
		r.rollback()
		r.interruptedVerdict(ctx, "during injection", "")
		// What the checks saw until then, as for a stop condition; a check
		// that saw nothing yet is left out, not called broken.
		if !r.judgeSeen("inject") {
			r.verdict(Failed, "steady state did not hold during injection: "+r.broken("inject"))
		}
		return
	}
	if injectErr != nil {
		r.enterPhase("rollback")
		r.rollback()
		if ctx.Err() != nil { // the injection was cut short by the interrupt
			r.interruptedVerdict(ctx, "during injection", "")
			return
		}
		r.verdict(Error, injectErr.Error())
		return
	}
	if !r.judge("inject") {
		r.verdict(Failed, "steady state did not hold during injection: "+r.broken("inject"))
	}

	r.enterPhase("rollback")
	r.rollback()
	if ctx.Err() != nil {
		r.interruptedVerdict(ctx, "after injection", "")
		return
	}
	r.enterPhase("recovery")
	r.recover(ctx)
}

// injectPhase injects and reverts the faults on the plan's schedule for
// the injection's length, checking the stop conditions every tick. It
// reports whether the phase ran to its end, whether a stop condition
// fired (the verdict is set) and a fault that could not be injected.
func (r *run) injectPhase(ctx context.Context) (completed, stopped bool, injectErr error) {
	start := time.Now()
	onTick := func(now time.Time) bool {
		elapsed := now.Sub(start)
		for _, f := range r.faults {
			switch {
			case f.injectedAt.IsZero() && f.err == "" && elapsed >= f.window.Start:
				f.injectedAt = time.Now()
				if err := r.inject(ctx, f); err != nil {
					f.err = err.Error()
					injectErr = fmt.Errorf("fault %q: %w", f.spec.Name, err)
					return true
				}
				r.progressf("injected %q: %s", f.spec.Name, strings.Join(f.hits(), ", "))
			case f.active && f.window.End < r.x.Inject && elapsed >= f.window.End:
				r.revertFault(f)
			}
		}
		if c := r.stopCondition(now); c != "" {
			stopped = true
			_ = r.journal(journal.Event{Type: journal.Note, Name: "stop_condition", Message: c})
			r.verdict(Aborted, "stop condition fired: "+c+" (the fault was reverted at once)")
			return true
		}
		return false
	}
	next := func() time.Time { // the next fault start or end
		var n time.Time
		for _, f := range r.faults {
			var at time.Time
			switch {
			case f.injectedAt.IsZero() && f.err == "":
				at = start.Add(f.window.Start)
			case f.active && f.window.End < r.x.Inject:
				at = start.Add(f.window.End)
			default:
				continue
			}
			if n.IsZero() || at.Before(n) {
				n = at
			}
		}
		return n
	}
	completed = r.tickFor(ctx, r.x.Inject, "inject", onTick, next)
	return completed, stopped, injectErr
}

// tickFor waits d, calling onTick every tick and at each time next names
// (a fault's start or end, so faults keep their schedule between ticks);
// onTick may end the wait by returning true. Probes run every tick. It
// reports false if ctx ended the wait.
func (r *run) tickFor(ctx context.Context, d time.Duration, phase string, onTick func(time.Time) bool, next func() time.Time) bool {
	end := time.Now().Add(d)
	wakeAt := func() time.Duration {
		w := end
		if next != nil {
			if n := next(); !n.IsZero() && n.Before(w) {
				w = n
			}
		}
		return time.Until(w)
	}
	t := time.NewTicker(r.opts.Tick)
	defer t.Stop()
	r.runProbes(ctx)
	if phase == "baseline" || phase == "inject" {
		r.evalStops(ctx)
	}
	if onTick != nil && onTick(time.Now()) {
		return true
	}
	wake := time.NewTimer(wakeAt())
	defer wake.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case now := <-t.C:
			r.runProbes(ctx)
			if phase == "baseline" || phase == "inject" {
				r.evalStops(ctx)
			}
			r.progressLine(phase, now, end)
		case <-wake.C:
		}
		now := time.Now()
		if onTick != nil && onTick(now) {
			return true
		}
		if !now.Before(end) {
			return true
		}
		wake.Reset(wakeAt())
	}
}

// progressLine records the last tick in samples.jsonl and shows it.
func (r *run) progressLine(phase string, now, end time.Time) {
	inFlight, oldest := r.col.look(now)
	s := r.col.window(now.Add(-r.opts.Tick), now, "", r.opts.Tick)
	active := []string{}
	for _, f := range r.faults {
		if f.active {
			active = append(active, f.spec.Name)
		}
	}
	if r.samples != nil {
		smp := Sample{Time: Stamp(now), Phase: phase, Requests: s.Count, Errors: s.Errors, ErrorRate: s.ErrorRate,
			Throughput: s.Throughput, P50: s.P50.Seconds(), P95: s.P95.Seconds(), P99: s.P99.Seconds(), Max: s.Max.Seconds(), ActiveFaults: active,
			InFlight: int64(inFlight), Oldest: oldest.Seconds()}
		smp.Probes, smp.Stops = r.tickOutcomes(now.Add(-r.opts.Tick), now)
		_ = r.samples.Encode(smp)
		if r.opts.OnSample != nil {
			r.guard("the metrics", func() { r.opts.OnSample(smp) })
		}
	}
	if r.opts.Progress == nil {
		return
	}
	faults := "none"
	if len(active) > 0 {
		faults = strings.Join(active, ", ")
	}
	left := max(end.Sub(now), 0).Round(time.Second)
	flight := fmt.Sprintf("%d in flight", inFlight)
	if inFlight > 0 {
		flight += fmt.Sprintf(" (oldest %v)", oldest.Round(100*time.Millisecond))
	}
	line := fmt.Sprintf("%-8s %5s left  %4.0f req/s done, %s  p50 %-8v p99 %-8v errors %5.1f%%  faults: %s",
		phase, left, float64(s.Count)/r.opts.Tick.Seconds(), flight, s.P50.Round(time.Millisecond/10), s.P99.Round(time.Millisecond/10), s.ErrorRate*100, faults)
	if len(r.probeFailures) > 0 {
		line += "  failing: " + strings.Join(r.probeFailures, "; ")
	}
	r.say(line, true)
}

func (r *run) runProbes(ctx context.Context) {
	r.probeFailures = r.probeFailures[:0]
	for i, p := range r.probes {
		began := time.Now()
		res, err := r.prober.Run(ctx, p)
		took := time.Since(began)
		ok, what := err == nil && res.Passed, res.Detail
		if err != nil {
			what = err.Error()
		}
		if !ok && ctx.Err() != nil {
			continue // cut short by the run's end: not something the probe saw
		}
		if !ok {
			r.probeFailures = append(r.probeFailures, r.x.SteadyState[i].Probe.Text()+": "+what)
		}
		r.col.addProbe(probeOutcome{at: time.Now(), check: i, ok: ok, what: what, latency: took})
	}
	slices.Sort(r.probeFailures) // probes is a map: one order for the line
}

// tickOutcomes are the probes' runs and the stop conditions' evaluations
// of [from, to), for samples.jsonl.
func (r *run) tickOutcomes(from, to time.Time) ([]ProbeSample, []StopSample) {
	var probes []ProbeSample
	for _, o := range r.col.probeOutcomes(from, to) {
		name := r.x.SteadyState[o.check].Probe.Name
		if name == "" {
			name = r.x.SteadyState[o.check].Probe.Text()
		}
		ps := ProbeSample{Probe: name, Passed: o.ok, Latency: o.latency.Seconds()}
		if !o.ok {
			ps.Detail = o.what
		}
		probes = append(probes, ps)
	}
	var stops []StopSample
	for i := range r.x.StopWhen {
		for _, o := range r.col.stopOutcomes(i, from, to) {
			stops = append(stops, StopSample{Condition: r.x.StopWhen[i].Text, Holds: o.holds, Value: o.value, Error: o.err})
		}
	}
	return probes, stops
}

// evalStops evaluates the stop conditions on a Prometheus (alerts,
// queries) once, recording each outcome; one that cannot be evaluated is
// said in the live line.
func (r *run) evalStops(ctx context.Context) {
	for i, c := range r.fx.StopWhen {
		if c.Measures() != "prometheus" {
			continue
		}
		o := stopOutcome{at: time.Now(), stop: i}
		evalCtx, cancel := context.WithTimeout(ctx, time.Second)
		switch c.Metric {
		case "alert":
			firing, err := r.prober.Alerts(evalCtx, c.Prometheus, c.Token)
			if err != nil {
				o.err = err.Error()
			}
			var a probe.Alert
			a, o.holds = probe.Firing(firing, c.Alert)
			o.since = a.ActiveAt
			if err == nil { // plotted: 1 while firing, 0 while not
				v := 0.0
				if o.holds {
					v = 1
				}
				o.value = &v
			}
		case "query":
			samples, err := r.prober.Query(evalCtx, c.Prometheus, c.Token, c.Query)
			switch {
			case err != nil:
				o.err = err.Error()
			case len(samples) == 0:
				o.err = "the query returned no sample"
			}
			// Several series: judged on each, it holds if any does.
			for _, smp := range samples {
				v := smp.Value
				if o.value == nil || c.Holds(v, 0) && !o.holds {
					o.value = &v
				}
				o.holds = o.holds || c.Holds(v, 0)
			}
		}
		cancel()
		if o.err != "" && ctx.Err() != nil {
			continue // cut short by the run's end
		}
		if o.err != "" {
			r.probeFailures = append(r.probeFailures, r.x.StopWhen[i].Text+": cannot be evaluated: "+o.err)
		}
		r.col.addStop(o)
	}
}

func inPhase(c experiment.Check, phase string) bool {
	for _, p := range c.Phases {
		if p == phase {
			return true
		}
	}
	return false
}

// judge evaluates the steady state on a whole phase and records the checks.
func (r *run) judge(phase string) bool {
	now := time.Now()
	held := true
	for i, c := range r.x.SteadyState {
		if !inPhase(c, phase) {
			continue
		}
		rec := r.checkOn(i, c, phase, func(of string) (load.Summary, bool) { return r.col.phaseSummary(phase, of, now) },
			r.phaseStart(phase), now)
		r.res.Checks = append(r.res.Checks, rec)
		held = held && rec.Held
	}
	return held
}

// judgeSeen is judge for a phase cut short: checks that measured nothing
// (no request finished, no probe ran) are left out.
func (r *run) judgeSeen(phase string) bool {
	n := len(r.res.Checks)
	r.judge(phase)
	held := true
	kept := r.res.Checks[:n]
	for _, c := range r.res.Checks[n:] {
		if c.Value == nil {
			continue
		}
		kept = append(kept, c)
		held = held && c.Held
	}
	r.res.Checks = kept
	return held
}

// broken says which checks of a phase did not hold, with their values.
func (r *run) broken(phase string) string {
	var out []string
	for _, c := range r.res.Checks {
		if c.Phase != phase || c.Held || c.Fired {
			continue
		}
		s := c.Condition
		switch {
		case c.Value != nil && c.Threshold != nil && c.Detail != "":
			s += fmt.Sprintf(" (measured %s, limit %s: %s)", FormatValue(*c.Value, c.Unit), FormatValue(*c.Threshold, c.Unit), c.Detail)
		case c.Value != nil && c.Threshold != nil:
			s += fmt.Sprintf(" (measured %s, limit %s)", FormatValue(*c.Value, c.Unit), FormatValue(*c.Threshold, c.Unit))
		case c.Detail != "":
			s += " (" + c.Detail + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func (r *run) phaseStart(phase string) time.Time {
	for _, p := range r.res.Phases {
		if p.Name == phase {
			return time.Time(p.Start)
		}
	}
	return time.Time{}
}

// checkOn evaluates one steady-state entry over [from, to), with summary
// giving the traffic there.
func (r *run) checkOn(i int, c experiment.Check, phase string, summary func(of string) (load.Summary, bool), from, to time.Time) CheckRecord {
	if c.Probe != nil {
		held, ran, passed, failure := r.col.probesHeld(i, from, to)
		// The condition as written ({front.addr}, not a port of the day),
		// so that runs compare; the address it reached goes in the detail.
		desc, at := c.Probe.Text(), ""
		if filled := r.probes[i]; filled != nil && filled.Text() != desc {
			at = " (" + strings.TrimPrefix(filled.Text(), "probe ") + ")"
		}
		if ran == 0 {
			return CheckRecord{Condition: desc, Phase: phase, Held: false, Detail: "the probe did not run" + at}
		}
		share, all := float64(passed)/float64(ran), 1.0
		detail := fmt.Sprintf("passed %d of %d%s", passed, ran, at)
		if failure != "" {
			detail += "; last failure: " + failure
		}
		return CheckRecord{Condition: desc, Phase: phase, Held: held, Value: &share, Threshold: &all, Unit: "ratio", Detail: detail}
	}
	cond := *c.Condition
	s, ok := summary(cond.Of)
	if cond.Measures() == "probes" { // the named probe's runs, not the traffic
		s = r.col.probeSummary(r.probeIndex[cond.Of], from, to)
		ok = s.Count > 0
	}
	rec := CheckRecord{Condition: cond.Text, Phase: phase, Unit: unit(cond)}
	if !ok || !measured(cond, s) {
		rec.Detail = "no requests measured"
		return rec
	}
	v := metricValue(cond, s)
	rec.Value = &v
	if cond.Metric == "latency" && s.InFlight > 0 {
		rec.Detail = fmt.Sprintf("%d request(s) in flight counted by their age so far", s.InFlight)
	}
	threshold := cond.Value
	baseline := 0.0
	if cond.Baseline {
		b, ok := r.col.phaseSummary("baseline", cond.Of, time.Now())
		if cond.Measures() == "probes" {
			end := r.phaseStart("inject")
			if end.IsZero() { // judging the baseline itself: what it has so far
				end = to
			}
			b = r.col.probeSummary(r.probeIndex[cond.Of], r.phaseStart("baseline"), end)
			ok = b.Count > 0
		}
		if !ok || b.Count == 0 {
			rec.Detail = "no baseline to compare with"
			return rec
		}
		baseline = metricValue(cond, b)
		threshold = cond.Value * baseline
	}
	rec.Threshold = &threshold
	rec.Held = cond.Holds(v, baseline)
	return rec
}

// stopCondition returns the first stop condition that fires now, or "".
// A condition without "for" is judged on the last tick; with "for D", on
// every tick of the last D, each of which must have met it. One on a
// Prometheus that cannot be evaluated for longer than its for (at least
// two ticks) fires too: a safety net that cannot see is no safety net.
func (r *run) stopCondition(now time.Time) string {
	for i, c := range r.fx.StopWhen {
		text := r.x.StopWhen[i].Text
		if c.Measures() == "prometheus" {
			if why := r.unevaluable(i, c, now); why != "" {
				r.res.Checks = append(r.res.Checks, CheckRecord{Condition: text, Phase: "inject", Held: true, Fired: true, Unit: unit(c),
					Detail: why})
				return text + " (" + why + ")"
			}
		}
		d := max(c.For, r.opts.Tick)
		if now.Sub(r.phaseStart("inject")) < d {
			continue
		}
		fired := true
		var last load.Summary
		var lastValue *float64
		var since time.Time
		for from := now.Add(-d); from.Before(now.Add(-r.opts.Tick / 2)); from = from.Add(r.opts.Tick) {
			to := from.Add(r.opts.Tick)
			switch c.Measures() {
			case "prometheus":
				outcomes := r.col.stopOutcomes(i, from, to)
				held := len(outcomes) > 0
				for _, o := range outcomes {
					held = held && o.err == "" && o.holds
					if o.value != nil {
						lastValue = o.value
					}
					if !o.since.IsZero() {
						since = o.since
					}
				}
				fired = fired && held
			case "probes":
				last = r.col.probeSummary(r.probeIndex[c.Of], from, to)
				fired = fired && last.Count > 0 && c.Holds(metricValue(c, last), 0)
			default:
				last = r.col.window(from, to, c.Of, r.opts.Tick)
				fired = fired && measured(c, last) && c.Holds(metricValue(c, last), 0)
			}
			if !fired {
				break
			}
		}
		if !fired {
			continue
		}
		rec := CheckRecord{Condition: text, Phase: "inject", Held: true, Fired: true, Unit: unit(c), Detail: "stop condition fired"}
		switch c.Measures() {
		case "prometheus":
			if c.Metric == "query" { // an alert's is only whether it fires
				limit := c.Value
				rec.Value, rec.Threshold = lastValue, &limit
			}
			if !since.IsZero() {
				rec.Detail = fmt.Sprintf("stop condition fired: the alert's condition has held since %s, %.1f s before the stop",
					since.UTC().Format(time.RFC3339Nano), now.Sub(since).Seconds())
			}
		default:
			v, limit := metricValue(c, last), c.Value
			rec.Value, rec.Threshold = &v, &limit
		}
		r.res.Checks = append(r.res.Checks, rec)
		return text
	}
	return ""
}

// blindStops names the stop conditions on a Prometheus that the baseline
// never evaluated, with why: a run does not inject with a safety net that
// cannot see.
func (r *run) blindStops() string {
	var out []string
	for i, c := range r.fx.StopWhen {
		if c.Measures() != "prometheus" {
			continue
		}
		if last, lastErr := r.col.lastEvaluated(i); last.IsZero() {
			out = append(out, r.x.StopWhen[i].Text+": "+lastErr)
		}
	}
	return strings.Join(out, "; ")
}

// unevaluable says why a stop condition on a Prometheus has not been
// evaluated for longer than it may be (its for, at least two ticks), or "".
func (r *run) unevaluable(i int, c experiment.Condition, now time.Time) string {
	grace := max(c.For, 2*r.opts.Tick)
	last, lastErr := r.col.lastEvaluated(i)
	since := r.phaseStart("baseline")
	if !last.IsZero() {
		since = last
	}
	if lastErr == "" || now.Sub(since) <= grace {
		return ""
	}
	return fmt.Sprintf("could not be evaluated for %v: %s", now.Sub(since).Round(time.Second), lastErr)
}

// recover waits for the steady state to hold on a whole window again.
func (r *run) recover(ctx context.Context) {
	rolledBack := r.phaseStart("recovery")
	win := min(r.opts.RecoveryWindow, max(r.x.Recovery, r.opts.Tick))
	deadline := rolledBack.Add(max(r.x.Recovery, win))
	var last []CheckRecord
	recovered := false
	onTick := func(now time.Time) bool {
		if now.Sub(rolledBack) < win {
			return false
		}
		from := now.Add(-win)
		last = last[:0]
		all := true
		for i, c := range r.x.SteadyState {
			if !inPhase(c, "recovery") {
				continue
			}
			rec := r.checkOn(i, c, "recovery", func(of string) (load.Summary, bool) { return r.col.window(from, now, of, r.opts.Tick), true }, from, now)
			last = append(last, rec)
			all = all && rec.Held
		}
		if all {
			ttr := from.Sub(rolledBack).Seconds()
			r.res.TimeToRecover = &ttr
			recovered = true
			return true
		}
		return false
	}
	if !r.tickFor(ctx, time.Until(deadline), "recovery", onTick, nil) {
		r.interruptedVerdict(ctx, "during recovery", "")
	}
	r.res.Checks = append(r.res.Checks, last...)
	if !recovered && ctx.Err() == nil {
		r.verdict(Failed, fmt.Sprintf("steady state did not come back within recovery (%v)", r.x.Recovery))
	}
}

// setup sets up the targets (finding what runs, giving launched
// processes their ports and isolated ones their network namespaces,
// starting embedded proxies and resolvers), fills every reference, puts
// the intercepts in place, then launches the processes in file order.
func (r *run) setup(ctx context.Context) error {
	// Every fault is in the result, also when setup ends before injection.
	for i, spec := range r.x.Faults {
		r.faults = append(r.faults, &faultRun{spec: spec, window: r.windows[i]})
	}
	if err := r.targets.Setup(ctx); err != nil {
		return err
	}
	if err := r.resolveRefs(); err != nil {
		return err
	}
	// What only setup knows (ports of 127.0.0.1:0, isolated instances'
	// addresses) is journaled, beside the launches' pids.
	if addrs := r.targets.Addresses(); len(addrs) > 0 {
		if err := r.journal(journal.Event{Type: journal.Note, Name: "resolved", Message: strings.Join(addrs, " ")}); err != nil {
			return err
		}
	}
	if err := r.targets.Intercept(ctx); err != nil {
		return err
	}
	return r.targets.Launch(ctx)
}

// startTraffic runs the load until the returned func is called.
func (r *run) startTraffic() func() {
	if r.x.Traffic == nil {
		return func() {}
	}
	cfg := load.Config{Rate: r.x.Traffic.Rate, Timeout: r.x.Traffic.Timeout, Seed: r.res.Seed, Flight: &load.Flight{}}
	for _, q := range r.traffic {
		req := load.Request{Name: q.Name, Weight: q.Weight, TCP: q.TCP, Redis: q.Redis, SQL: q.SQL, DNS: q.DNS, GRPC: q.GRPC}
		if req.Kind() == load.KindHTTP {
			req.Method, req.URL, req.Body, req.Header = q.Method, q.URL, []byte(q.Body), http.Header{}
			for k, v := range q.Headers {
				req.Header.Set(k, v)
			}
		}
		cfg.Requests = append(cfg.Requests, req)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.col.mu.Lock()
	r.col.flight = cfg.Flight
	r.col.mu.Unlock()
	go func() {
		defer close(done)
		r.guard("the traffic", func() {
			err := load.Run(ctx, cfg, func(res load.Result) { r.guard("the traffic's results", func() { r.col.add(res) }) })
			if err != nil { // the requests could not be set up: said, and the checks see no traffic
				r.progressf("traffic: %v", err)
				r.exitsMu.Lock()
				r.exits = append(r.exits, "the traffic did not run: "+strings.ReplaceAll(err.Error(), "\n", "; "))
				r.exitsMu.Unlock()
			}
		})
	}()
	return func() {
		cancel()
		select {
		case <-done:
		case <-r.opts.Hurry:
		}
	}
}

// teardown stops what the run launched and started.
func (r *run) teardown() {
	if r.res.Phases == nil || r.res.Phases[len(r.res.Phases)-1].Name != "teardown" {
		r.enterPhase("teardown")
	}
	r.targets.Teardown(r.opts.Hurry)
	r.prober.Close()
}

func (r *run) finish() {
	r.sayMu.Lock()
	if r.shown { // end the last tick's line
		fmt.Fprintln(r.opts.Progress)
		r.shown = false
	}
	r.sayMu.Unlock()
	now := time.Now()
	if n := len(r.res.Phases); n > 0 {
		r.res.Phases[n-1].End = Stamp(now)
	}
	r.res.Ended = Stamp(now)
	if r.x.Traffic != nil {
		r.res.Traffic = r.col.traffic(now)
		r.res.Timeout = r.x.Traffic.Timeout.Seconds()
	}
	if r.res.Verdict == "" {
		r.res.Verdict = Passed
	}
	r.exitsMu.Lock()
	r.res.Reasons = append(r.res.Reasons, r.exits...)
	r.exitsMu.Unlock()
	for i, f := range r.faults {
		r.res.Faults = append(r.res.Faults, FaultRecord{
			Name: f.spec.Name, Target: f.spec.Target, Action: f.spec.Action.Kind(), Settings: r.x.Faults[i].Settings(), Hit: f.hits(),
			InjectedAt: stampPtr(f.injectedAt), RevertedAt: stampPtr(f.revertedAt), Evidence: f.evidence(), Error: f.err,
		})
	}
	end := r.journal(journal.Event{Type: journal.RunEnd, Message: r.res.Verdict})
	if why := r.lostReason(); why != "" {
		r.verdict(Error, why)
		if end != nil {
			r.res.Reasons = append(r.res.Reasons, "the journal has no end: recover will take the run for one that did not finish")
		}
	}
}

func (r *run) writeResult() error {
	b, err := MarshalResult(r.res)
	if err != nil {
		return err
	}
	return errors.Join(os.WriteFile(filepath.Join(r.opts.OutDir, "result.json"), b, 0o644))
}

// measured reports whether a summary has something a condition can be
// judged on: finished requests, or for latency, requests in flight too.
func measured(c experiment.Condition, s load.Summary) bool {
	return s.Count > 0 || c.Metric == "latency" && s.InFlight > 0
}
