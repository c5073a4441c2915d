package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/report"
	"github.com/faultline/faultline/runner"
	"github.com/faultline/faultline/state"
)

func newRunCmd(g *globals) *cobra.Command {
	var (
		out, seedFlag                            string
		vars                                     []string
		dryRun, asJSON, allowNoStop, allowRemote bool
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a chaos experiment: baseline, faults under load, rollback, recovery, verdict",
		Long: `Run one experiment file end to end:

  setup     launch the processes it owns, start embedded proxies, wait for ready
  baseline  measure the steady state; if it does not hold, inject nothing (ERROR)
  inject    apply faults on their schedule under constant-rate traffic; stop
            conditions are checked every second and abort the run (ABORTED)
  rollback  revert every fault, on every way out (Ctrl-C and SIGTERM included)
  recovery  wait for the steady state to hold on a 5 s window again
  teardown  stop what the run launched

Every change is journaled before it is made (DIR/journal.jsonl); if the runner
is killed, 'faultline recover DIR' undoes what it left. The result is
DIR/result.json; the verdict is the exit code.

` + exitCodesHelp,
		Example: `  faultline run slow-dependency.yaml
  faultline run slow-dependency.yaml --dry-run
  faultline run slow-dependency.yaml --seed 42 --out runs/today --json > result.json
  faultline run checkout.yaml --var HOST=127.0.0.1`,
		Args: exactArgs("FILE"),
		RunE: func(c *cobra.Command, args []string) error {
			opts := experiment.Options{AllowNoStop: allowNoStop}
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			x, err := experiment.ParseFile(args[0], opts)
			if err != nil {
				return fileErrors(c.ErrOrStderr(), args[0], err)
			}
			if remote := x.OffLoopback(); len(remote) > 0 && !allowRemote {
				return usagef("%s reaches beyond this machine (%s): pass --allow-remote if that is intended", args[0], strings.Join(remote, ", "))
			}
			var seed int64
			if seedFlag != "" {
				if _, err := fmt.Sscan(seedFlag, &seed); err != nil || seed == 0 {
					return usagef("--seed %q: want a non-zero whole number", seedFlag)
				}
			}
			if out != "" {
				if _, err := os.Stat(filepath.Join(out, "journal.jsonl")); err == nil {
					return usagef("--out %s holds a run already: give another directory", out)
				}
			}
			if dryRun {
				return printPlan(c.OutOrStdout(), x, seed)
			}
			if out == "" {
				out = filepath.Join("faultline-runs", fmt.Sprintf("%s-%s", dirName(x.Name), time.Now().UTC().Format("20060102T150405Z")))
			}
			stateDir := g.state()
			if halted, note := state.Halted(stateDir); halted {
				return &exitError{ExitError, fmt.Errorf("halted since %s: no run starts until 'faultline resume'", strings.TrimSpace(note))}
			}
			defer registerRun(c.ErrOrStderr(), stateDir, x.Name, out)()
			watched, stopWatch := state.Watch(c.Context(), stateDir)
			defer stopWatch()
			watched, stopKube, err := watchNamespaces(watched, podsNamespaces(x))
			if err != nil {
				return failure(err)
			}
			defer stopKube()
			ctx, cancel := context.WithCancelCause(watched)
			defer cancel(nil)
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, stopSignals()...)
			defer signal.Stop(sigs)
			finished := make(chan struct{})
			defer close(finished)
			hurry := make(chan struct{})
			go func() {
				var sig os.Signal
				select {
				case sig = <-sigs:
				case <-finished:
					return
				}
				// On a terminal, first clear the line the run redraws.
				clear := ""
				if isTerminal(c.ErrOrStderr()) {
					clear = "\r\033[K"
				}
				fmt.Fprintln(c.ErrOrStderr(), clear+"interrupted: rolling back (interrupt again to exit as soon as every fault is reverted)")
				cancel(fmt.Errorf("%v signal received", sig))
				// Only a person escalates: Ctrl-C or SIGTERM again. A closing
				// terminal may send SIGHUP more than once.
				again := func() bool {
					for {
						select {
						case <-finished:
							return false
						case s := <-sigs:
							if s != syscall.SIGHUP {
								return true
							}
						}
					}
				}
				if !again() {
					return
				}
				// The second: revert, kill what was launched, write the
				// result, skip the rest.
				fmt.Fprintln(c.ErrOrStderr(), clear+"exiting as soon as every fault is reverted (interrupt a third time to exit now)")
				close(hurry)
				if again() {
					fmt.Fprintf(c.ErrOrStderr(), "exiting now: if anything is left, run 'faultline recover %s'\n", out)
					os.Exit(ExitAborted)
				}
			}()
			if _, err := os.Stat(filepath.Join(out, "journal.jsonl")); err == nil {
				return usagef("--out %s holds a run already: give another directory", out)
			}
			progress := c.ErrOrStderr()
			fmt.Fprintf(progress, "faultline run %s: %q, seed in result, output in %s\n", args[0], x.Name, out)
			var flags []string // what changes what runs, for the replay command
			if allowNoStop {
				flags = append(flags, "--allow-no-stop")
			}
			if allowRemote {
				flags = append(flags, "--allow-remote")
			}
			res, err := runner.Run(ctx, x, runner.Options{OutDir: out, Seed: seed, Vars: opts.Vars, Flags: flags, Progress: progress, Live: isTerminal(progress), Hurry: hurry})
			if err != nil {
				return failure(err)
			}
			select {
			case <-hurry:
				fmt.Fprintf(progress, "reports skipped: 'faultline report %s' writes them\n", out)
			default:
				writeReports(progress, out)
			}
			if asJSON {
				b, _ := runner.MarshalResult(res)
				_, _ = c.OutOrStdout().Write(b)
			} else {
				printVerdict(c.OutOrStdout(), res, out)
			}
			return verdictError(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "run `directory` (default faultline-runs/NAME-UTCSTAMP)")
	f.StringVar(&seedFlag, "seed", "", "`seed` for every random choice, to replay a run (default: picked and recorded)")
	f.StringArrayVar(&vars, "var", nil, "`NAME=VALUE` for ${NAME} in the file, repeatable")
	f.BoolVar(&dryRun, "dry-run", false, "check the file, print the plan and what it would hit, touch nothing")
	f.BoolVar(&asJSON, "json", false, "print result.json to stdout (progress stays on stderr)")
	f.BoolVar(&allowNoStop, "allow-no-stop", false, "accept an experiment without stop conditions")
	f.BoolVar(&allowRemote, "allow-remote", false, "allow targets, traffic and probes off loopback")
	return cmd
}

// writeReports renders a finished run's report.html, junit.xml and
// summary.md; a failure is reported, not fatal: the run's outcome stands.
func writeReports(progress io.Writer, out string) {
	report.Version = version()
	r, err := report.Load(out)
	if err == nil {
		err = r.WriteAll()
	}
	if err != nil {
		fmt.Fprintf(progress, "warning: reports not written: %v ('faultline report %s' tries again)\n", err, out)
	}
}

// orMachine names a fault's target; stress and exec faults have none.
func orMachine(target string) string {
	if target == "" {
		return "the machine"
	}
	return target
}

func parseVars(vars []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vars {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, usagef("--var %q: want NAME=VALUE", v)
		}
		out[name] = value
	}
	return out, nil
}

// fileErrors prints every problem of a file and returns a usage error.
func fileErrors(w io.Writer, file string, err error) error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintln(w, e)
		}
		return &exitError{ExitUsage, fmt.Errorf("%s: %d problem(s)", file, len(joined.Unwrap()))}
	}
	return usagef("%v", err)
}

func verdictError(res *runner.Result) error {
	switch res.Verdict {
	case runner.Passed:
		return nil
	case runner.Failed:
		return &exitError{ExitFailed, fmt.Errorf("FAILED: %s", strings.Join(res.Reasons, "; "))}
	case runner.Aborted:
		return &exitError{ExitAborted, fmt.Errorf("ABORTED: %s", strings.Join(res.Reasons, "; "))}
	}
	return &exitError{ExitError, fmt.Errorf("ERROR: %s", strings.Join(res.Reasons, "; "))}
}

func printVerdict(w io.Writer, res *runner.Result, out string) {
	fmt.Fprintf(w, "\n%s  %s\n", res.Verdict, res.Name)
	if res.Hypothesis != "" {
		fmt.Fprintf(w, "hypothesis: %s\n", res.Hypothesis)
	}
	for _, r := range res.Reasons {
		fmt.Fprintf(w, "  why: %s\n", r)
	}
	for _, c := range res.Checks {
		mark := "held  "
		switch {
		case c.Fired:
			mark = "FIRED "
		case !c.Held:
			mark = "BROKEN"
		}
		detail := c.Detail
		if c.Value != nil {
			detail = runner.FormatValue(*c.Value, c.Unit)
			if c.Threshold != nil {
				detail += " (limit " + runner.FormatValue(*c.Threshold, c.Unit) + ")"
			}
			if c.Detail != "" && !c.Fired {
				detail += ": " + c.Detail
			}
		}
		fmt.Fprintf(w, "  %-9s %s  %-40s %s\n", c.Phase, mark, c.Condition, detail)
	}
	for _, f := range res.Faults {
		state := "not injected"
		if f.InjectedAt != nil {
			state = "injected"
			if f.RevertedAt != nil {
				state += ", reverted"
			}
		}
		fmt.Fprintf(w, "  fault %q (%s on %s): %s; hit %s\n", f.Name, f.Action, orMachine(f.Target), state, strings.Join(f.Hit, ", "))
		if f.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", f.Error)
		}
	}
	if res.TimeToRecover != nil {
		fmt.Fprintf(w, "  time to recover: %.1fs\n", *res.TimeToRecover)
	}
	fmt.Fprintf(w, "  replay: %s\n  result: %s\n  report: %s\n", report.ReplayCommand(*res), filepath.Join(out, "result.json"), filepath.Join(out, "report.html"))
}

// podsNamespaces are the namespaces an experiment's pods targets act on,
// by kubeconfig.
func podsNamespaces(x *experiment.Experiment) map[string][]string {
	out := map[string][]string{}
	for _, t := range x.Targets {
		if t.Pods != nil && !slices.Contains(out[t.Pods.Kubeconfig], t.Pods.Namespace) {
			out[t.Pods.Kubeconfig] = append(out[t.Pods.Kubeconfig], t.Pods.Namespace)
		}
	}
	return out
}

// watchNamespaces ends the returned context when a namespace is halted
// (the faultline/halt annotation) or its kill switch cannot be read for
// kube.HaltUnreadableLimit; a namespace halted already, or whose kill
// switch cannot be read, refuses the run (exit 4).
func watchNamespaces(parent context.Context, byConfig map[string][]string) (context.Context, func(), error) {
	ctx := parent
	var stops []context.CancelFunc
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for kubeconfig, namespaces := range byConfig {
		c, err := kube.Open(kubeconfig)
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		for _, ns := range namespaces {
			readCtx, done := context.WithTimeout(parent, 10*time.Second)
			halted, note, err := c.Halted(readCtx, ns)
			done()
			if err != nil {
				// A run that cannot read the kill switch could not be stopped by it.
				stopAll()
				return nil, nil, &exitError{ExitError, fmt.Errorf("namespace %s: cannot read its kill switch (the %s annotation), so 'faultline halt --namespace' could not stop this run: %w", ns, kube.HaltAnnotation, err)}
			}
			if halted {
				stopAll()
				return nil, nil, &exitError{ExitError, fmt.Errorf("namespace %s halted (%s): 'faultline resume --namespace %s' first", ns, note, ns)}
			}
		}
		var stop context.CancelFunc
		ctx, stop = c.WatchHalt(ctx, namespaces)
		stops = append(stops, stop)
	}
	return ctx, stopAll, nil
}

// podsNow lists the pods a target selects now (reading only), for the plan.
func podsNow(p *experiment.PodsTarget) string {
	c, err := kube.Open(p.Kubeconfig)
	if err != nil {
		return "cannot reach the cluster: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := c.Pods(ctx, p.Namespace, p.Selector)
	if err != nil {
		return "cannot list them: " + err.Error()
	}
	names := make([]string, 0, len(pods))
	for _, pod := range pods {
		names = append(names, pod.Name)
	}
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	return fmt.Sprintf("%d now (%s); each fault resolves its selection when it starts", len(pods), strings.Join(names, ", "))
}

// printPlan prints what a run would do, touching nothing.
func printPlan(w io.Writer, x *experiment.Experiment, seed int64) error {
	var refused []error // what a run would refuse at setup
	fmt.Fprintf(w, "plan for %q (%s)\n", x.Name, x.File)
	if x.Hypothesis != "" {
		fmt.Fprintf(w, "hypothesis: %s\n", x.Hypothesis)
	}
	fmt.Fprintf(w, "phases: baseline %v, inject %v, recovery up to %v (max_duration %v)\n", x.Baseline, x.Inject, x.Recovery, x.MaxDuration)
	if x.Traffic != nil {
		fmt.Fprintf(w, "traffic: %g requests/s, timeout %v, %d kind(s) of request\n", x.Traffic.Rate, x.Traffic.Timeout, len(x.Traffic.Requests))
	}
	fmt.Fprintln(w, "targets:")
	for _, t := range x.Targets {
		switch {
		case t.Proxy != nil && t.Proxy.API != "":
			fmt.Fprintf(w, "  %-12s remote proxy %s at %s\n", t.Name, t.Proxy.Name, t.Proxy.API)
		case t.Proxy != nil:
			fmt.Fprintf(w, "  %-12s embedded proxy %s -> %s\n", t.Name, t.Proxy.Listen, t.Proxy.Upstream)
		case t.DNS != nil:
			fmt.Fprintf(w, "  %-12s dns resolver on %s (upstream %s, %d record(s))\n", t.Name, t.DNS.Listen, orNone(t.DNS.Upstream), len(t.DNS.Records))
		case t.Pods != nil:
			fmt.Fprintf(w, "  %-12s pods %s in namespace %s: %s\n", t.Name, t.Pods.Selector, t.Pods.Namespace, podsNow(t.Pods))
		case t.Process.Launched():
			fmt.Fprintf(w, "  %-12s launched: %d × %s\n", t.Name, t.Process.Instances, strings.Join(t.Process.Command, " "))
		default:
			desc, err := describeExisting(t.Process)
			if err != nil {
				desc = "REFUSED: " + strings.ReplaceAll(err.Error(), "\n", "\n"+strings.Repeat(" ", 16))
				refused = append(refused, fmt.Errorf("target %s: %w", t.Name, err))
			}
			fmt.Fprintf(w, "  %-12s running process(es): %s\n", t.Name, desc)
		}
	}
	fmt.Fprintln(w, "faults (times from the start of injection):")
	for _, f := range x.Faults {
		end := "end of inject"
		if f.Duration > 0 {
			end = (f.Start + f.Duration).String()
		}
		sel := "  select " + f.Select.String()
		if f.Target == "" {
			sel = ""
		}
		fmt.Fprintf(w, "  %-24q %-11s on %-12s [%v, %s)%s\n", f.Name, f.Action.Kind(), orMachine(f.Target), f.Start, end, sel)
	}
	if len(x.SteadyState) > 0 {
		fmt.Fprintln(w, "steady state:")
		for _, c := range x.SteadyState {
			what := ""
			if c.Condition != nil {
				what = c.Condition.Text
			} else {
				what = c.Probe.Text()
			}
			fmt.Fprintf(w, "  %-50s in %s\n", what, strings.Join(c.Phases, ", "))
		}
	}
	for _, f := range x.Faults {
		switch a := f.Action.(type) {
		case experiment.Exec:
			fmt.Fprintf(w, "fault %q runs: %s; reverts with: %s\n", f.Name, strings.Join(a.Inject, " "), strings.Join(a.Revert, " "))
		case experiment.Stress:
			fmt.Fprintf(w, "fault %q runs: faultline stress %s %s; stopped on revert\n", f.Name, a.Resource, strings.Join(a.Args, " "))
		}
	}
	if len(x.StopWhen) == 0 {
		fmt.Fprintln(w, "stop conditions: none (--allow-no-stop)")
	} else {
		fmt.Fprintln(w, "stop when any of:")
	}
	for _, c := range x.StopWhen {
		fmt.Fprintf(w, "  %s\n", c.Text)
	}
	if seed != 0 {
		fmt.Fprintf(w, "seed: %d (instances are picked with it)\n", seed)
	}
	fmt.Fprintln(w, "dry run: nothing was started or touched")
	if len(refused) > 0 {
		return &exitError{ExitError, fmt.Errorf("a run would refuse this experiment: %w", errors.Join(refused...))}
	}
	return nil
}

// describeExisting lists the running processes a target names now, as a
// run would find them; err is what a run would refuse.
func describeExisting(p *experiment.ProcessTarget) (string, error) {
	pids, err := runner.FindProcesses(p)
	if err != nil {
		return "", err
	}
	var lines []string
	for i, pid := range pids {
		if i == 10 {
			lines = append(lines, fmt.Sprintf("and %d more", len(pids)-10))
			break
		}
		user := "?"
		if uid, err := process.UID(pid); err == nil {
			user = strconv.Itoa(uid)
			if u, err := osuser.LookupId(user); err == nil {
				user = u.Username
			}
		}
		lines = append(lines, fmt.Sprintf("pid %d (%s) %s", pid, user, process.Command(pid)))
	}
	return fmt.Sprintf("%d now:\n%16s%s", len(pids), "", strings.Join(lines, "\n"+strings.Repeat(" ", 16))), nil
}

func newRecoverCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "recover [PATH]",
		Short: "Undo what a killed run left injected",
		Long: `Read the journal of a run directory, or of every run directory in PATH
(default faultline-runs), and for each run that did not end cleanly undo
what it injected and did not revert: resume stopped processes, stop the
processes it launched, remove its toxics from remote proxies, re-enable
proxies it took down, run revert commands. Processes are matched by pid and
start time, so a recycled pid is never touched. Running it twice is
harmless. Exit 0 when everything is undone, 4 when something could not be.`,
		Example: "  faultline recover\n  faultline recover faultline-runs/slow-dependency-20261127T080000Z",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("recover takes at most one PATH")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			path := "faultline-runs"
			if len(args) == 1 {
				path = args[0]
			}
			dirs, err := runDirs(path)
			if errors.Is(err, os.ErrNotExist) && len(args) == 0 {
				err = nil
			}
			if err != nil {
				return failure(err)
			}
			for i, dir := range dirs {
				if abs, err := filepath.Abs(dir); err == nil {
					dirs[i] = abs
				}
			}
			registered, _ := state.Runs(g.state())
			if len(args) == 0 {
				// Every registered run that did not end cleanly, wherever it wrote.
				for _, run := range registered {
					if !run.Alive() && !slices.ContainsFunc(dirs, func(d string) bool { return sameDir(d, run.Out) }) {
						dirs = append(dirs, run.Out)
					}
				}
			}
			if len(dirs) == 0 {
				fmt.Fprintf(c.OutOrStdout(), "nothing to recover: no run directory in %s and no registered run\n", path)
				return nil
			}
			failed := 0
			for _, dir := range dirs {
				n, done := recoverRun(c.Context(), c.OutOrStdout(), dir)
				failed += n
				if !done {
					continue
				}
				// Recovered: a dead runner's registration has done its job. One
				// whose recovery failed, or whose runner lives, stays.
				for _, run := range registered {
					if sameDir(run.Out, dir) {
						state.Forget(g.state(), run)
					}
				}
				// A stress's own journal, kept in the state directory, goes too.
				if rel, err := filepath.Rel(filepath.Join(g.state(), "stress"), dir); err == nil && filepath.IsLocal(rel) {
					_ = os.RemoveAll(dir)
				}
			}
			if failed > 0 {
				return failure(fmt.Errorf("%d change(s) could not be undone", failed))
			}
			return nil
		},
	}
}

// journalOf returns the journal in a run directory: a run's, or a
// monkey's; "" if there is none.
func journalOf(dir string) string {
	for _, name := range []string{"journal.jsonl", "monkey.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	return ""
}

// sameDir reports whether a and b name the same directory, through
// symbolic links too.
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// runDirs returns path if it holds a journal, else its subdirectories that do.
func runDirs(path string) ([]string, error) {
	if journalOf(path) != "" {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if journalOf(filepath.Join(path, e.Name())) != "" {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	return out, nil
}

// recoverRun undoes a run's pending changes. It returns how many failed,
// and whether the run is done with: recovered, or nothing to recover
// (not when its runner still lives, or an undo failed).
func recoverRun(ctx context.Context, w io.Writer, dir string) (failed int, done bool) {
	path := journalOf(dir)
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
	note := func(e journal.Event) {
		e.Time = time.Now().UTC()
		b, _ := json.Marshal(e)
		_, _ = jf.Write(append(b, '\n'))
		_ = jf.Sync()
	}
	pending := journal.Pending(events)
	if len(pending) == 0 {
		fmt.Fprintf(w, "%s: nothing was left injected\n", dir)
	}
	for _, e := range pending {
		what, err := undo(ctx, e.Undo)
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

// undo carries out one Undo and says what it did.
func undo(ctx context.Context, u *journal.Undo) (string, error) {
	switch u.Kind {
	case "sigcont":
		err := process.Signal(u.Procs, syscall.SIGCONT)
		return fmt.Sprintf("resumed %d process(es)", len(u.Procs)), process.IgnoreGone(err)
	case "kill":
		if u.Group {
			n := 0
			var errs []error
			for _, p := range u.Procs {
				k, err := process.SignalGroup(p, syscall.SIGKILL)
				n += k
				errs = append(errs, err)
			}
			return fmt.Sprintf("stopped %d launched process(es) and what they started", n), errors.Join(errs...)
		}
		err := process.Signal(u.Procs, syscall.SIGKILL)
		return fmt.Sprintf("stopped %d launched process(es)", len(u.Procs)), process.IgnoreGone(err)
	case "remove_toxic":
		err := proxy.NewClient(u.API, os.Getenv("FAULTLINE_TOKEN")).RemoveToxic(ctx, u.Proxy, u.Toxic)
		var ae *proxy.APIError
		if errors.As(err, &ae) && ae.Status == 404 {
			err = nil // already gone
		}
		return fmt.Sprintf("removed toxic %s from proxy %s at %s", u.Toxic, u.Proxy, u.API), err
	case "enable_proxy":
		_, err := proxy.NewClient(u.API, os.Getenv("FAULTLINE_TOKEN")).SetEnabled(ctx, u.Proxy, true)
		return fmt.Sprintf("re-enabled proxy %s at %s", u.Proxy, u.API), err
	case "scale":
		c, err := kube.Open(u.Kubeconfig)
		if err == nil && u.Replicas == nil {
			return "", fmt.Errorf("scale %s %s/%s: the journal does not say to how many replicas", u.Resource, u.Namespace, u.Name)
		}
		if err == nil {
			_, err = c.Scale(ctx, u.Namespace, u.Resource, u.Name, *u.Replicas)
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("scaled %s %s/%s back to %d", u.Resource, u.Namespace, u.Name, *u.Replicas), nil
	case "uncordon":
		c, err := kube.Open(u.Kubeconfig)
		if err == nil {
			_, err = c.Cordon(ctx, u.Node, false)
		}
		return "uncordoned node " + u.Node, err
	case "remove_file":
		err := os.Remove(u.Path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil // the stress removed it on its way out
		}
		return "removed " + u.Path, err
	case "exec":
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return "ran " + strings.Join(u.Command, " "), execCommand(cctx, u.Command)
	}
	return "", fmt.Errorf("unknown undo %q", u.Kind)
}

// execCommand runs a revert command; a failure carries its output.
func execCommand(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("empty command")
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// dirName makes an experiment's name one safe directory name: letters,
// digits, '_', '-' and '.' (not first) stay; anything else ('/', spaces)
// becomes '-'.
func dirName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0) {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "run"
	}
	return string(b)
}
