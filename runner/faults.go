package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/stress"
)

// fault is one fault of the run and what became of it.
type fault struct {
	spec       experiment.Fault
	hit        []string
	injectedAt time.Time
	revertedAt time.Time
	evidence   []string
	err        string
	// revert undoes the injection; nil when not injected or reverted.
	revert func(context.Context) error
}

func (r *run) streams(f experiment.Fault) []proxy.Stream {
	switch f.Direction {
	case "upstream":
		return []proxy.Stream{proxy.Upstream}
	case "both":
		return []proxy.Stream{proxy.Upstream, proxy.Downstream}
	}
	return []proxy.Stream{proxy.Downstream}
}

// toxicName is the name of a toxic the run adds: never one of the user's.
func (r *run) toxicName(f experiment.Fault, s proxy.Stream) string {
	slug := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '-'
	}, f.Name)
	return fmt.Sprintf("faultline-%s-%s-%s", r.id, slug, s)
}

// A kind is how the runner injects one kind of fault, an experiment
// action type: it journals its intent before each change, applies the
// fault, records what it hit and sets f.revert to what undoes it (which
// may add evidence). The phases call inject and f.revert and know nothing
// else of a fault; a new kind of fault is a function registered here.
type kind func(r *run, ctx context.Context, f *fault, t *target) error

var kinds = map[reflect.Type]kind{}

// register makes inject the kind of the action type A.
func register[A experiment.Action](inject func(r *run, ctx context.Context, f *fault, t *target, a A) error) {
	kinds[reflect.TypeFor[A]()] = func(r *run, ctx context.Context, f *fault, t *target) error {
		return inject(r, ctx, f, t, f.spec.Action.(A))
	}
}

func init() {
	register((*run).injectToxic)
	register((*run).injectDown)
	register(func(r *run, _ context.Context, f *fault, t *target, _ experiment.Stop) error {
		return r.injectSignal(f, t, syscall.SIGSTOP)
	})
	register(func(r *run, _ context.Context, f *fault, t *target, a experiment.Kill) error {
		return r.injectSignal(f, t, experiment.Signals[a.Signal])
	})
	register((*run).injectExec)
	register((*run).injectDNS)
	register((*run).injectStress)
	register((*run).injectPodKill)
	register((*run).injectScale)
	register((*run).injectCordon)
}

// inject applies a fault through its kind.
func (r *run) inject(ctx context.Context, f *fault) error {
	k, ok := kinds[reflect.TypeOf(f.spec.Action)]
	if !ok {
		return fmt.Errorf("fault %s: no kind of fault does %T", f.spec.Name, f.spec.Action)
	}
	return k(r, ctx, f, r.targets[f.spec.Target])
}

func (r *run) injectToxic(ctx context.Context, f *fault, t *target, a experiment.ProxyToxic) error {
	var undo []func(context.Context) error
	// Whatever was added is reverted with the fault, also when a later
	// stream fails.
	defer func() {
		if len(undo) == 0 {
			return
		}
		f.revert = func(ctx context.Context) error {
			var errs []string
			for i := len(undo) - 1; i >= 0; i-- {
				if err := undo[i](ctx); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		}
	}()
	tox := f.spec.Toxicity
	for _, s := range r.streams(f.spec) {
		name := r.toxicName(f.spec, s)
		id := r.nextID()
		if t.proxy != nil {
			if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name, Message: "add toxic " + name + " to embedded proxy " + t.spec.Name}); err != nil {
				return err
			}
			if _, err := t.proxy.AddToxic(proxy.Toxic{Name: name, Stream: s, Toxicity: &tox, Effect: a.Effect}); err != nil {
				_ = r.journal(journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
				return err
			}
			p := t.proxy
			undo = append(undo, func(context.Context) error {
				if experiment.HTTPAction(a) {
					// Evidence that it took effect: the requests it acted on.
					f.evidence = append(f.evidence, fmt.Sprintf("%s acted on %d request(s) on %s", a.Effect.Type(), p.ToxicHits(name), s))
				}
				return p.RemoveToxic(name)
			})
			f.hit = append(f.hit, fmt.Sprintf("proxy %s (%s, %s)", t.spec.Name, p.Listen(), s))
		} else {
			px := t.spec.Proxy
			if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name,
				Undo: &journal.Undo{Kind: "remove_toxic", API: px.API, Proxy: px.Name, Toxic: name}}); err != nil {
				return err
			}
			info := proxy.ToxicInfo{Name: name, Type: a.Effect.Type(), Stream: s.String(), Toxicity: tox, Attributes: wireAttributes(a.Effect)}
			cl, pname := t.client, px.Name
			remove := func(ctx context.Context) error { return ignoreNotFound(cl.RemoveToxic(ctx, pname, name)) }
			if _, err := t.client.AddToxic(ctx, px.Name, info); err != nil {
				if refused(err) {
					_ = r.journal(journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
					return err
				}
				// The server may have added it before the answer was lost:
				// removed on revert as if it had been.
				_ = r.journal(journal.Event{Type: journal.Unknown, ID: id, Message: err.Error()})
				undo = append(undo, func(ctx context.Context) error {
					err := remove(ctx)
					r.journalUndone(id, err)
					return err
				})
				return err
			}
			undo = append(undo, remove)
			f.hit = append(f.hit, fmt.Sprintf("proxy %s at %s (%s)", px.Name, px.API, s))
		}
		_ = r.journal(journal.Event{Type: journal.Done, ID: id})
		uid := id
		last := undo[len(undo)-1]
		undo[len(undo)-1] = func(ctx context.Context) error {
			err := last(ctx)
			r.journalUndone(uid, err)
			return err
		}
	}
	f.evidence = append(f.evidence, fmt.Sprintf("%s toxic in place on %d stream(s)", a.Effect.Type(), len(undo)))
	return nil
}

// wireAttributes turns an effect into the API's attributes.
func wireAttributes(e proxy.Effect) map[string]any { return proxy.Attributes(e) }

// injectDNS puts the fault's rules in front of the resolver's own; the
// revert restores those. The resolver lives in this process: nothing is
// left for recover if the runner dies.
func (r *run) injectDNS(_ context.Context, f *fault, t *target, a experiment.DNS) error {
	rules, err := dnsfault.ParseRules(a.Rules)
	if err != nil {
		return err
	}
	id := r.nextID()
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name,
		Message: "dns rules " + strings.Join(a.Rules, ", ") + " on resolver " + t.spec.Name}); err != nil {
		return err
	}
	faulted := t.dns.Faulted()
	t.dns.SetRules(append(rules, t.dns.Rules()...))
	_ = r.journal(journal.Event{Type: journal.Done, ID: id})
	f.hit = append(f.hit, fmt.Sprintf("dns %s (%s)", t.spec.Name, t.dns.Addr()))
	f.revert = func(context.Context) error {
		// Only this fault's rules go: another fault on the resolver may
		// have added its own since, or taken its own away.
		t.dns.SetRules(withoutRules(t.dns.Rules(), rules))
		f.evidence = append(f.evidence, fmt.Sprintf("rules answered %d queries", t.dns.Faulted()-faulted))
		r.journalUndone(id, nil)
		return nil
	}
	return nil
}

// withoutRules returns rules less one occurrence of each of drop.
func withoutRules(rules, drop []dnsfault.Rule) []dnsfault.Rule {
	out := slices.Clone(rules)
	for _, d := range drop {
		if i := slices.IndexFunc(out, func(r dnsfault.Rule) bool { return r.String() == d.String() }); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}

func (r *run) injectDown(ctx context.Context, f *fault, t *target, _ experiment.Down) error {
	id := r.nextID()
	if t.proxy != nil {
		if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name, Message: "disable embedded proxy " + t.spec.Name}); err != nil {
			return err
		}
		p := t.proxy
		listen, upstream := p.Listen(), p.Upstream()
		if err := p.Update(listen, upstream, false); err != nil {
			return err
		}
		f.hit = append(f.hit, fmt.Sprintf("proxy %s (%s)", t.spec.Name, listen))
		f.revert = func(context.Context) error {
			err := p.Update(listen, upstream, true)
			r.journalUndone(id, err)
			return err
		}
	} else {
		px := t.spec.Proxy
		if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name,
			Undo: &journal.Undo{Kind: "enable_proxy", API: px.API, Proxy: px.Name}}); err != nil {
			return err
		}
		cl := t.client
		enable := func(ctx context.Context) error {
			_, err := cl.SetEnabled(ctx, px.Name, true)
			r.journalUndone(id, err)
			return err
		}
		if _, err := t.client.SetEnabled(ctx, px.Name, false); err != nil {
			if refused(err) {
				_ = r.journal(journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
				return err
			}
			// It may be down all the same: enabled again on revert.
			_ = r.journal(journal.Event{Type: journal.Unknown, ID: id, Message: err.Error()})
			f.revert = enable
			return err
		}
		f.hit = append(f.hit, fmt.Sprintf("proxy %s at %s", px.Name, px.API))
		f.revert = enable
	}
	_ = r.journal(journal.Event{Type: journal.Done, ID: id})
	f.evidence = append(f.evidence, "proxy disabled: new connections refused")
	return nil
}

// injectSignal stops or kills the selected instances with their
// descendants.
func (r *run) injectSignal(f *fault, t *target, sig syscall.Signal) error {
	ins, err := r.selectInstances(t, f.spec.Select)
	if err != nil {
		return err
	}
	var procs []journal.Proc
	for _, in := range ins {
		if sig != syscall.SIGSTOP {
			in.expectExit.Store(true)
		}
		tree, err := process.Tree(in.proc.PID)
		if err != nil {
			return fmt.Errorf("target %s[%d]: %w", t.spec.Name, in.index, err)
		}
		procs = append(procs, tree...)
		f.hit = append(f.hit, fmt.Sprintf("pid %d (%s[%d], %d processes)", in.proc.PID, t.spec.Name, in.index, len(tree)))
	}
	id := r.nextID()
	stop := sig == syscall.SIGSTOP
	var undo *journal.Undo
	switch {
	case stop:
		undo = &journal.Undo{Kind: "sigcont", Procs: procs}
	case !t.spec.Process.Launched() && len(t.spec.Process.Restart) > 0:
		undo = &journal.Undo{Kind: "exec", Command: t.spec.Process.Restart}
	}
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name, Undo: undo, Message: sig.String()}); err != nil {
		return err
	}
	if err := process.Signal(procs, sig); err != nil {
		_ = r.journal(journal.Event{Type: journal.Note, ID: id, Message: err.Error()})
	}
	_ = r.journal(journal.Event{Type: journal.Done, ID: id})
	if stop {
		f.evidence = append(f.evidence, plural(countState(procs, 'T'), "process", "processes")+" stopped (state T)")
		f.revert = func(context.Context) error {
			err := process.Signal(procs, syscall.SIGCONT)
			r.journalUndone(id, err)
			return err
		}
		return nil
	}
	f.evidence = append(f.evidence, fmt.Sprintf("%s sent to %s", signalName(sig), plural(len(procs), "process", "processes")))
	switch {
	case f.spec.Irreversible:
		r.journalUndone(id, nil)
	case t.spec.Process.Launched():
		f.revert = func(ctx context.Context) error {
			var errs []string
			for _, in := range ins {
				<-in.done // it was killed: wait for the exit before reusing its port
				if err := r.launch(ctx, t, in); err != nil {
					errs = append(errs, err.Error())
				}
			}
			var err error
			if len(errs) > 0 {
				err = fmt.Errorf("restart: %s", strings.Join(errs, "; "))
			}
			r.journalUndone(id, err)
			return err
		}
	default:
		restart := t.spec.Process.Restart
		f.revert = func(ctx context.Context) error {
			err := RunCommand(ctx, restart)
			r.journalUndone(id, err)
			return err
		}
	}
	return nil
}

func countState(procs []journal.Proc, want byte) int {
	n := 0
	for _, p := range procs {
		if st, err := process.State(p); err == nil && st == want {
			n++
		}
	}
	return n
}

func (r *run) injectExec(ctx context.Context, f *fault, _ *target, a experiment.Exec) error {
	id := r.nextID()
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name, Undo: &journal.Undo{Kind: "exec", Command: a.Revert}}); err != nil {
		return err
	}
	revert := func(ctx context.Context) error {
		err := RunCommand(ctx, a.Revert)
		r.journalUndone(id, err)
		return err
	}
	if err := RunCommand(ctx, a.Inject); err != nil {
		// Interrupted, or failed halfway: what it did before is not
		// known, so the revert command runs all the same.
		_ = r.journal(journal.Event{Type: journal.Unknown, ID: id, Message: err.Error()})
		f.revert = revert
		return err
	}
	_ = r.journal(journal.Event{Type: journal.Done, ID: id})
	f.hit = append(f.hit, "command "+strings.Join(a.Inject, " "))
	f.evidence = append(f.evidence, "inject command exited 0")
	f.revert = revert
	return nil
}

// RunCommand runs a command as process.RunCommand does.
func RunCommand(ctx context.Context, args []string) error { return process.RunCommand(ctx, args) }

// refused reports whether an API call's error is the server's definite
// refusal (a 4xx answer: nothing was changed), as opposed to an outcome
// that is not known (no answer, a timeout, an interrupt, a 5xx).
func refused(err error) bool {
	var ae *proxy.APIError
	return errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500
}

// ignoreNotFound makes removing what is gone already a success.
func ignoreNotFound(err error) error {
	var ae *proxy.APIError
	if errors.As(err, &ae) && ae.Status == 404 {
		return nil
	}
	return err
}

// injectStress starts 'faultline stress KIND ...' as a child of the run
// (it dies with the runner) and waits until the stress is in place. A disk
// fill's file is journaled first, so that recover removes it even if the
// child was killed before it could.
func (r *run) injectStress(ctx context.Context, f *fault, _ *target, a experiment.Stress) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"stress", a.Resource}
	runDir, _ := filepath.Abs(r.opts.OutDir)
	fill := func(arg string) (string, error) { return r.fillRefs(strings.ReplaceAll(arg, "{run_dir}", runDir)) }
	for _, arg := range a.Args {
		filled, err := fill(arg)
		if err != nil {
			return fmt.Errorf("fault %s: %w", f.spec.Name, err)
		}
		args = append(args, filled)
	}
	args = append(args, "--json", "--journaled-by-run") // this run journals and registers it
	var file string
	var fileID string
	if a.Resource == "disk" {
		dir, err := fill(a.Path)
		if err != nil {
			return fmt.Errorf("fault %s: %w", f.spec.Name, err)
		}
		file = filepath.Join(dir, ".faultline-fill-"+r.id+"-"+strings.NewReplacer(" ", "-", "/", "-").Replace(f.spec.Name))
		args = append(args, "--file", file)
		fileID = r.nextID()
		if err := r.journal(journal.Event{Type: journal.Intent, ID: fileID, Name: f.spec.Name,
			Undo: &journal.Undo{Kind: "remove_file", Path: file}, Message: "fill " + dir}); err != nil {
			return err
		}
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var said lastLine // why it ended, if it ends early
	cmd.Stderr = io.MultiWriter(&prefixWriter{w: r.procLog, prefix: "stress " + a.Resource + " "}, &said)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fault %s: %w", f.spec.Name, err)
	}
	proc, _ := process.Identify(cmd.Process.Pid)
	id := r.nextID()
	_ = r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name,
		Undo: &journal.Undo{Kind: "kill", Procs: []journal.Proc{proc}, Group: true}, Message: "faultline " + strings.Join(args, " ")})
	ready := make(chan string, 1)
	final := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		var last string
		defer func() {
			final <- last
			exited <- cmd.Wait()
		}()
		r.guard("reading the stress's output", func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if d, ok := strings.CutPrefix(line, "ready: "); ok {
					ready <- d
					continue
				}
				last = line
			}
		})
	}()
	stopChild := func() (string, error) {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		var last string
		select {
		case last = <-final:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			last = <-final
		}
		err := <-exited
		var res stress.Result
		if jerr := json.Unmarshal([]byte(last), &res); jerr == nil {
			last = res.String()
		}
		return last, err
	}
	undoFile := func() {
		if file == "" {
			return
		}
		err := os.Remove(file)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		r.journalUndone(fileID, err)
	}
	select {
	case what := <-ready:
		_ = r.journal(journal.Event{Type: journal.Done, ID: id})
		f.hit = append(f.hit, fmt.Sprintf("stress %s (pid %d): %s", a.Resource, cmd.Process.Pid, what))
	case <-time.After(2 * time.Minute):
		_, _ = stopChild()
		r.journalUndone(id, nil)
		undoFile()
		return fmt.Errorf("fault %s: stress %s not in place after 2 minutes", f.spec.Name, a.Resource)
	case <-ctx.Done():
		_, _ = stopChild()
		r.journalUndone(id, nil)
		undoFile()
		return ctx.Err()
	case <-exited:
		r.journalUndone(id, nil)
		undoFile()
		why := strings.TrimPrefix(said.String(), "faultline: ") // Wait has copied all of stderr
		if why == "" {
			why = "'faultline " + strings.Join(args, " ") + "' exited"
		}
		return fmt.Errorf("the stress ended before it was in place: %s (its output is in processes.log)", why)
	}
	f.revert = func(context.Context) error {
		evidence, err := stopChild()
		if evidence != "" {
			f.evidence = append(f.evidence, evidence)
		}
		var ee *exec.ExitError
		ws, _ := func() (syscall.WaitStatus, bool) {
			if errors.As(err, &ee) {
				w, ok := ee.Sys().(syscall.WaitStatus)
				return w, ok
			}
			return 0, false
		}()
		switch {
		case ee != nil && ws.Signaled():
			// Killed (the OOM killer picks a memory stress first): what it
			// held is given back all the same.
			f.evidence = append(f.evidence, fmt.Sprintf("the stress process was killed by %s before the end", signalName(ws.Signal())))
			err = nil
		case ee != nil && ee.ExitCode() != 0:
			err = fmt.Errorf("stress %s exited %d", a.Resource, ee.ExitCode())
		default:
			err = nil
		}
		r.journalUndone(id, err)
		undoFile()
		return err
	}
	return nil
}

// lastLine keeps the last line written to it that is not empty.
type lastLine struct {
	mu        sync.Mutex
	line, cur []byte
}

func (l *lastLine) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range b {
		if c != '\n' {
			l.cur = append(l.cur, c)
			continue
		}
		if len(bytes.TrimSpace(l.cur)) > 0 {
			l.line = append(l.line[:0], l.cur...)
		}
		l.cur = l.cur[:0]
	}
	return len(b), nil
}

func (l *lastLine) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(bytes.TrimSpace(l.cur)) > 0 {
		return string(bytes.TrimSpace(l.cur))
	}
	return string(bytes.TrimSpace(l.line))
}

// signalName is a signal as people write it: SIGKILL, not "killed".
func signalName(sig syscall.Signal) string {
	for name, s := range experiment.Signals {
		if s == sig {
			return name
		}
	}
	return sig.String()
}

// plural is "1 process", "3 processes".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
