package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/plan"
	"github.com/faultline/faultline/report"
	"github.com/faultline/faultline/runner"
	"github.com/faultline/faultline/state"
)

// runOptions are faultline run's flags.
type runOptions struct {
	file, out, seed, metricsListen, agentImage string
	vars                                       []string
	dryRun, asJSON, allowNoStop, allowRemote   bool
}

func newRunCmd(g *globals) *cobra.Command {
	var o runOptions
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
			o.file = args[0]
			return runExperiment(c, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "run `directory` (default faultline-runs/NAME-UTCSTAMP)")
	f.StringVar(&o.seed, "seed", "", "`seed` for every random choice, to replay a run (default: picked and recorded)")
	f.StringArrayVar(&o.vars, "var", nil, "`NAME=VALUE` for ${NAME} in the file, repeatable")
	f.BoolVar(&o.dryRun, "dry-run", false, "check the file, print the plan and what it would hit, touch nothing")
	f.BoolVar(&o.asJSON, "json", false, "print result.json to stdout (progress stays on stderr)")
	f.BoolVar(&o.allowNoStop, "allow-no-stop", false, "accept an experiment without stop conditions")
	f.BoolVar(&o.allowRemote, "allow-remote", false, "allow targets, traffic and probes off loopback")
	f.StringVar(&o.agentImage, "agent-image", "", "`image` of the agent that network faults inside pods run in an ephemeral container (the faultline binary as entrypoint), for pods targets whose file gives no agent_image")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve the run's Prometheus metrics (phase, faults active, traffic, probes) on `HOST:PORT`/metrics; off loopback needs --allow-remote")
	return cmd
}

// runExperiment is faultline run: the file read and checked, its plan
// built (and printed, for a dry run), the run registered and watching the
// kill switches, carried out, reported.
func runExperiment(c *cobra.Command, g *globals, o runOptions) error {
	vars, err := parseVars(o.vars)
	if err != nil {
		return err
	}
	reg := builtin.Registry()
	x, err := experiment.ParseFile(o.file, experiment.Options{Vars: vars, AllowNoStop: o.allowNoStop, Actions: reg.Actions(), AgentImage: o.agentImage})
	if err != nil {
		return fileErrors(c.ErrOrStderr(), o.file, err)
	}
	if remote := x.OffLoopback(); len(remote) > 0 && !o.allowRemote {
		return usagef("%s reaches beyond this machine (%s): pass --allow-remote if that is intended", o.file, strings.Join(remote, ", "))
	}
	if o.metricsListen != "" && !loopbackAddr(o.metricsListen) && !o.allowRemote {
		return usagef("--metrics-listen %s is off loopback: anyone who reaches it reads the run; pass --allow-remote if that is intended", o.metricsListen)
	}
	seed, err := parseSeed(o.seed)
	if err != nil {
		return err
	}
	if o.out != "" {
		if _, err := os.Stat(filepath.Join(o.out, "journal.jsonl")); err == nil {
			return usagef("--out %s holds a run already: give another directory", o.out)
		}
	}
	p, err := plan.Build(x, plan.Options{Seed: seed, Faults: reg})
	if err != nil {
		return failure(err)
	}
	if o.dryRun {
		if err := p.Describe(c.OutOrStdout()); err != nil {
			return failure(err)
		}
		return nil
	}
	if o.out == "" {
		o.out = filepath.Join("faultline-runs", fmt.Sprintf("%s-%s", dirName(x.Name), time.Now().UTC().Format("20060102T150405Z")))
	}
	stateDir := g.state()
	if halted, note := state.Halted(stateDir); halted {
		return &exitError{ExitError, fmt.Errorf("halted since %s: no run starts until 'faultline resume'", strings.TrimSpace(note))}
	}
	defer registerRun(c.ErrOrStderr(), stateDir, x.Name, o.out)()
	watched, stopWatch := state.Watch(c.Context(), stateDir)
	defer stopWatch()
	watched, stopKube, err := watchNamespaces(watched, podsNamespaces(x))
	if err != nil {
		return failure(err)
	}
	defer stopKube()
	ctx, hurry, stop := interruptible(watched, c.ErrOrStderr(), o.out)
	defer stop()
	progress := c.ErrOrStderr()
	fmt.Fprintf(progress, "faultline run %s: %q, seed in result, output in %s\n", o.file, x.Name, o.out)
	ropts := runner.Options{OutDir: o.out, Vars: vars, Flags: o.replayFlags(), Faults: reg,
		Progress: progress, Live: isTerminal(progress), Hurry: hurry}
	if o.metricsListen != "" {
		m := newRunMetrics(x, o.out)
		stopMetrics, err := serveMetrics(o.metricsListen, m, progress)
		if err != nil {
			return err
		}
		defer stopMetrics()
		ropts.OnSample = m.sample
	}
	res, err := runner.Run(ctx, p, ropts)
	if err != nil {
		return failure(err)
	}
	select {
	case <-hurry:
		fmt.Fprintf(progress, "reports skipped: 'faultline report %s' writes them\n", o.out)
	default:
		writeReports(progress, o.out)
	}
	if o.asJSON {
		b, _ := runner.MarshalResult(res)
		_, _ = c.OutOrStdout().Write(b)
	} else {
		printVerdict(c.OutOrStdout(), res, o.out)
	}
	return verdictError(res)
}

// replayFlags are the flags that change what runs, for the replay command.
func (o runOptions) replayFlags() []string {
	var flags []string
	if o.allowNoStop {
		flags = append(flags, "--allow-no-stop")
	}
	if o.allowRemote {
		flags = append(flags, "--allow-remote")
	}
	if o.agentImage != "" {
		flags = append(flags, "--agent-image", o.agentImage)
	}
	return flags
}

// parseSeed reads --seed: empty is 0 (picked and recorded).
func parseSeed(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	var seed int64
	if _, err := fmt.Sscan(s, &seed); err != nil || seed == 0 {
		return 0, usagef("--seed %q: want a non-zero whole number", s)
	}
	return seed, nil
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
				n, done := runner.Recover(c.Context(), dir, builtin.Registry(), c.OutOrStdout())
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
func journalOf(dir string) string { return runner.JournalOf(dir) }

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
