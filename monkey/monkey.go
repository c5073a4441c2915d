// Package monkey is Chaos Monkey for processes: within a schedule (days,
// working hours in a time zone), each opted-in group loses one process now
// and then, at random (a mean time between terminations, a minimum gap, a
// daily cap), unless its steady state is already broken. Every decision is
// journaled and printed; leashed, it decides and terminates nothing.
package monkey

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"

	"time"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/probe"
	"github.com/faultline/faultline/process"
)

// Clock is the monkey's time: the real one, or one a test drives.
type Clock interface {
	Now() time.Time
	// Sleep waits d, or until ctx ends (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time { return time.Now() }

func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Options configure Run.
type Options struct {
	Clock Clock // default RealClock
	// Seed seeds every random choice; zero picks one. It is journaled.
	Seed int64
	// Tick is how often each group is considered (default 1 minute).
	Tick time.Duration
	// Journal receives every decision and termination.
	Journal *journal.Writer
	// Probes run the groups' outage checks; nil means a prober with every
	// built-in kind.
	Probes *probe.Prober
	// Out, if not nil, gets a line per decision.
	Out io.Writer
	// Until, if not zero, ends the run at that time on Clock.
	Until time.Time
}

// Decision is one thing the monkey decided.
type Decision struct {
	At     time.Time
	Group  string
	Action string // terminated, leashed, skipped
	PID    int
	Pod    string // namespace/name, for a pods group
	Reason string
}

// group is a group's state.
type group struct {
	spec  Group
	kube  *kube.Client
	last  time.Time
	day   string // the local date the count is for
	count int
}

// Run decides until ctx ends (or Until), and returns what it decided.
func Run(ctx context.Context, m *Config, opts Options) ([]Decision, error) {
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Minute
	}
	if opts.Seed == 0 {
		opts.Seed = time.Now().UnixNano()
	}
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5deece66d))
	var groups []*group
	for _, g := range m.Groups {
		gr := &group{spec: g}
		if g.Pods != nil {
			var err error
			if gr.kube, err = kube.Open(g.Pods.Kubeconfig); err != nil {
				return nil, fmt.Errorf("group %s: %w", g.Name, err)
			}
		}
		groups = append(groups, gr)
	}
	if opts.Probes == nil {
		opts.Probes = probe.New(probe.Config{Timeout: 2 * time.Second,
			Cluster: func(kubeconfig string) (probe.Cluster, error) { return kube.Open(kubeconfig) }})
	}
	r := &monkeyRun{m: m, opts: opts, rng: rng, prober: opts.Probes}
	self, _ := process.Identify(os.Getpid()) // so that recover leaves a live monkey alone
	if err := r.journal(journal.Event{Type: journal.RunStart, Name: "monkey", Runner: &self, Message: fmt.Sprintf("file=%s seed=%d leashed=%v", m.File, opts.Seed, m.Leashed)}); err != nil {
		return nil, fmt.Errorf("the monkey's journal: %w", err) // nothing is terminated unjournaled
	}
	defer func() {
		if err := r.journal(journal.Event{Type: journal.RunEnd, Message: "monkey stopped"}); err != nil && r.opts.Out != nil {
			fmt.Fprintf(r.opts.Out, "monkey: its end not journaled: %v\n", err)
		}
	}()
	// p is the chance of a termination in one tick of scheduled time, for
	// a mean time between terminations (a Poisson process).
	p := 1 - math.Exp(-opts.Tick.Seconds()/m.MeanTimeBetween.Seconds())
	for {
		now := opts.Clock.Now()
		if !opts.Until.IsZero() && !now.Before(opts.Until) {
			return r.decisions, nil
		}
		if r.inSchedule(now) {
			for _, g := range groups {
				r.consider(ctx, g, now, p)
			}
		}
		if err := opts.Clock.Sleep(ctx, opts.Tick); err != nil {
			return r.decisions, nil // ctx ended: a normal stop
		}
	}
}

type monkeyRun struct {
	m         *Config
	opts      Options
	rng       *rand.Rand
	prober    *probe.Prober
	decisions []Decision
	seq       int
}

// journal appends e to the monkey's journal, if it has one. A termination
// whose intent could not be written is not made (journal first); a later
// line that could not be written is said in the decision (d.Reason), since
// what it records has happened.
func (r *monkeyRun) journal(e journal.Event) error {
	if r.opts.Journal == nil {
		return nil
	}
	e.Time = time.Now()
	return r.opts.Journal.Append(e)
}

// record journals what a termination did once it is done; a line that
// cannot be written is said in the decision.
func (r *monkeyRun) record(d *Decision, e journal.Event) {
	if err := r.journal(e); err != nil {
		d.Reason += "; not journaled (" + e.Type + "): " + err.Error()
	}
}

// inSchedule reports whether t is on a scheduled day and hour.
func (r *monkeyRun) inSchedule(t time.Time) bool {
	local := t.In(r.m.Location)
	day := false
	for _, d := range r.m.Days {
		day = day || local.Weekday() == d
	}
	since := time.Duration(local.Hour())*time.Hour + time.Duration(local.Minute())*time.Minute + time.Duration(local.Second())*time.Second
	return day && since >= r.m.From && since < r.m.To
}

func (r *monkeyRun) decide(d Decision) {
	r.decisions = append(r.decisions, d)
	line := fmt.Sprintf("%s %s: %s", d.At.In(r.m.Location).Format("2006-01-02 15:04 MST"), d.Group, d.Action)
	if d.PID != 0 {
		line += fmt.Sprintf(" pid %d", d.PID)
	}
	if d.Pod != "" {
		line += " pod " + d.Pod
	}
	if d.Reason != "" {
		line += " (" + d.Reason + ")"
	}
	if err := r.journal(journal.Event{Type: journal.Note, Name: d.Group, Message: line}); err != nil {
		line += " (not journaled: " + err.Error() + ")"
	}
	if r.opts.Out != nil {
		fmt.Fprintln(r.opts.Out, line)
	}
}

// consider draws whether g loses a process now, and acts.
func (r *monkeyRun) consider(ctx context.Context, g *group, now time.Time, p float64) {
	today := now.In(r.m.Location).Format("2006-01-02")
	if g.day != today {
		g.day, g.count = today, 0
	}
	if g.count >= r.m.DailyCap || !g.last.IsZero() && now.Sub(g.last) < r.m.MinGap {
		return
	}
	if r.rng.Float64() >= p {
		return
	}
	d := Decision{At: now, Group: g.spec.Name}
	members, err := r.members(ctx, g)
	if err != nil || len(members) == 0 {
		d.Action, d.Reason = "skipped", "no "+g.noun()+" in the group"
		if err != nil {
			d.Reason += ": " + err.Error()
		}
		r.decide(d)
		return
	}
	for _, c := range g.spec.Check {
		res, err := r.prober.Run(ctx, c)
		if why := res.Detail; err != nil || !res.Passed {
			if err != nil {
				why = err.Error()
			}
			d.Action, d.Reason = "skipped", "steady state already broken: "+why
			r.decide(d)
			return
		}
	}
	victim := members[r.rng.IntN(len(members))]
	d.PID = victim.pid
	if victim.pod != nil {
		d.Pod = victim.pod.Namespace + "/" + victim.pod.Name
	}
	d.Reason = fmt.Sprintf("picked 1 of %d matching %s(es); termination %d of at most %d today", len(members), g.noun(), g.count+1, r.m.DailyCap)
	g.last, g.count = now, g.count+1
	if r.m.Leashed {
		d.Action = "leashed: would terminate"
	} else if victim.pod != nil {
		r.deletePod(ctx, g, &d, *victim.pod)
	} else {
		r.killProcess(ctx, g, &d, victim.pid)
	}
	r.decide(d)
}

// member is one process (pid) or pod of a group.
type member struct {
	pid int
	pod *kube.Pod
}

func (g *group) noun() string {
	if g.kube != nil {
		return "pod"
	}
	return "process"
}

// Members lists what a group selects now, as the monkey would find it
// when it considers the group: "pid 123 (command)" or "namespace/pod".
func Members(ctx context.Context, g Group) ([]string, error) {
	gr := &group{spec: g}
	if g.Pods != nil {
		var err error
		if gr.kube, err = kube.Open(g.Pods.Kubeconfig); err != nil {
			return nil, err
		}
	}
	ms, err := (&monkeyRun{}).members(ctx, gr)
	var out []string
	for _, m := range ms {
		if m.pod != nil {
			out = append(out, m.pod.Namespace+"/"+m.pod.Name)
		} else {
			out = append(out, fmt.Sprintf("pid %d (%s)", m.pid, process.Command(m.pid)))
		}
	}
	return out, err
}

// members lists the group's processes or pods now.
func (r *monkeyRun) members(ctx context.Context, g *group) ([]member, error) {
	var out []member
	if g.kube != nil {
		pods, err := g.kube.Pods(ctx, g.spec.Pods.Namespace, g.spec.Pods.Selector)
		for i := range pods {
			out = append(out, member{pod: &pods[i]})
		}
		return out, err
	}
	pids, err := r.find(g)
	for _, pid := range pids {
		out = append(out, member{pid: pid})
	}
	return out, err
}

// killProcess signals a process and its descendants, journaled, and runs
// the group's restart command if it has one.
func (r *monkeyRun) killProcess(ctx context.Context, g *group, d *Decision, pid int) {
	procs, err := process.Tree(pid)
	if err != nil {
		d.Action, d.Reason = "skipped", "the victim is gone: "+err.Error()
		return
	}
	r.seq++
	id := fmt.Sprintf("m%d", r.seq)
	var undo *journal.Undo
	if len(g.spec.Processes.Restart) > 0 {
		undo = &journal.Undo{Kind: "exec", Command: g.spec.Processes.Restart}
	}
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: g.spec.Name, Undo: undo, Message: fmt.Sprintf("%s to pid %d", g.spec.Signal, pid)}); err != nil {
		d.Action, d.Reason = "skipped", "its intent could not be journaled, so nothing was done: "+err.Error()
		return
	}
	err = process.Signal(procs, process.Signals[g.spec.Signal])
	if err = process.IgnoreGone(err); err != nil {
		// A process there would not take the signal (EPERM, say): it was
		// not terminated, and nothing is restarted.
		d.Action, d.Reason = "failed", err.Error()
		r.record(d, journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
		return
	}
	d.Action = "terminated"
	r.record(d, journal.Event{Type: journal.Done, ID: id})
	if undo == nil {
		r.record(d, journal.Event{Type: journal.Undone, ID: id, Message: "irreversible: nothing to restart"})
		return
	}
	// The restart comes once the victim has gone (its port, its pid file
	// free), or after 10 s; a monkey told to stop meanwhile still
	// restarts what it terminated.
	signalled := time.Now()
	for process.Alive(procs[0]) && time.Since(signalled) < 10*time.Second {
		time.Sleep(20 * time.Millisecond) // polling another process's exit
	}
	if process.Alive(procs[0]) {
		d.Reason += fmt.Sprintf("; still running %.0f s after the signal", time.Since(signalled).Seconds())
	}
	rerr := process.RunCommand(context.WithoutCancel(ctx), g.spec.Processes.Restart)
	d.Reason += "; restarted"
	if rerr != nil {
		// Not undone: recover runs the restart again.
		d.Reason += " failed: " + rerr.Error()
		r.record(d, journal.Event{Type: journal.Note, ID: id, Message: "restart failed: " + rerr.Error()})
		return
	}
	r.record(d, journal.Event{Type: journal.Undone, ID: id})
}

// deletePod deletes a pod with grace 0, journaled; its controller
// replaces it.
func (r *monkeyRun) deletePod(ctx context.Context, g *group, d *Decision, pod kube.Pod) {
	r.seq++
	id := fmt.Sprintf("m%d", r.seq)
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: g.spec.Name, Message: "delete pod " + d.Pod}); err != nil {
		d.Action, d.Reason = "skipped", "its intent could not be journaled, so nothing was done: "+err.Error()
		return
	}
	zero := int64(0)
	if err := g.kube.DeletePods(ctx, []kube.Pod{pod}, &zero); err != nil {
		d.Action, d.Reason = "failed", err.Error()
		r.record(d, journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
		return
	}
	d.Action = "terminated"
	r.record(d, journal.Event{Type: journal.Done, ID: id})
	r.record(d, journal.Event{Type: journal.Undone, ID: id, Message: "its controller replaces it"})
}

// find lists the group's processes now.
func (r *monkeyRun) find(g *group) ([]int, error) {
	pids, err := process.Find(g.spec.Processes.Selector())
	if err != nil || len(g.spec.Env) == 0 {
		return pids, err
	}
	var out []int
	for _, pid := range pids {
		if hasEnv(pid, g.spec.Env) {
			out = append(out, pid)
		}
	}
	return out, nil
}

// hasEnv reports whether a process's environment holds every KEY=VALUE.
func hasEnv(pid int, want map[string]string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range want {
		if env[k] != v {
			return false
		}
	}
	return true
}
