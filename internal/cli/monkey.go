package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/monkey"
)

func newMonkeyCmd(g *globals) *cobra.Command {
	var o monkeyOptions
	cmd := &cobra.Command{
		Use:   "monkey -c FILE",
		Short: "Chaos Monkey for processes and pods: now and then, one member of each opted-in group dies",
		Long: `Runs in the foreground (or as a CronJob) and, within its schedule, terminates one
process of an opted-in group now and then, at random:

  schedule:
    timezone: Europe/Paris
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:00"        # only while people are at work to notice
    mean_time_between: 1h      # per group, counted in scheduled time
    min_gap: 10m               # per group
    daily_cap: 3               # per group
  leashed: false               # true: decide and journal, terminate nothing
  groups:
    checkout:
      process: {match: "faultline shop checkout", restart: [systemctl, restart, checkout]}
      env: {CHAOS_MONKEY: enabled}   # opt-in label: only processes started with it
      signal: SIGKILL
      outage_check:                   # skip the group while its steady state is broken
        - probe: GET http://127.0.0.1:8080/health
          expect: 200

Every decision (terminated, leashed, skipped and why) is printed and journaled
in --out/monkey.jsonl with the seed, so a day's choices can be replayed. It
stops on Ctrl-C, SIGTERM or 'faultline halt' (exit 3).`,
		Example: `  faultline monkey -c monkey.yaml
  faultline monkey -c monkey.yaml --leashed --for 8h
  faultline monkey -c monkey.yaml --dry-run`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runMonkey(c, g, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "config", "c", "", "monkey `file` (YAML)")
	f.StringVar(&o.out, "out", "", "`directory` for monkey.jsonl (default faultline-runs/monkey-UTCSTAMP)")
	f.StringVar(&o.seed, "seed", "", "`seed` for every random choice (default: picked and journaled)")
	f.BoolVar(&o.leashed, "leashed", false, "decide and journal, terminate nothing")
	f.DurationVar(&o.tick, "tick", time.Minute, "how often each group is considered")
	f.DurationVar(&o.forDur, "for", 0, "stop after this long (default: until Ctrl-C, SIGTERM or halt)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check the file and print the schedule and groups; touch nothing")
	return cmd
}

// monkeyOptions are faultline monkey's flags.
type monkeyOptions struct {
	file, out, seed string
	leashed, dryRun bool
	tick, forDur    time.Duration
}

// runMonkey is faultline monkey: the file read, its members shown (a dry
// run), or the monkey run, registered and watching the kill switches.
func runMonkey(c *cobra.Command, g *globals, o monkeyOptions) error {
	if o.file == "" {
		return usagef("-c FILE is required: the monkey's schedule and groups (see --help)")
	}
	m, err := monkey.ParseFile(o.file)
	if err != nil {
		return fileErrors(c.ErrOrStderr(), o.file, err)
	}
	if o.leashed {
		m.Leashed = true
	}
	seed, err := parseSeed(o.seed)
	if err != nil {
		return err
	}
	w := c.OutOrStdout()
	if o.dryRun {
		printMonkey(w, m)
		printMembers(c.Context(), w, m)
		fmt.Fprintln(w, "dry run: nothing was started or touched")
		return nil
	}
	stateDir := g.state()
	watched, stopWatch, err := killSwitch(c, stateDir)
	if err != nil {
		return err
	}
	defer stopWatch()
	if o.out == "" {
		o.out = filepath.Join("faultline-runs", "monkey-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return failure(err)
	}
	j, err := journal.Create(filepath.Join(o.out, "monkey.jsonl"))
	if err != nil {
		return failure(err)
	}
	defer j.Close()
	defer registerRun(c.ErrOrStderr(), stateDir, "monkey", o.out)()
	byConfig := map[string][]string{}
	for _, gr := range m.Groups {
		if gr.Pods != nil {
			byConfig[gr.Pods.Kubeconfig] = append(byConfig[gr.Pods.Kubeconfig], gr.Pods.Namespace)
		}
	}
	watched, stopKube, err := watchNamespaces(watched, byConfig)
	if err != nil {
		return failure(err)
	}
	defer stopKube()
	ctx := watched
	printMonkey(w, m) // once registered and watching the kill switch
	opts := monkey.Options{Seed: seed, Tick: o.tick, Journal: j, Out: w}
	if o.forDur > 0 {
		opts.Until = time.Now().Add(o.forDur)
	}
	ds, err := monkey.Run(ctx, m, opts)
	if err != nil {
		return failure(err)
	}
	terminated := 0
	for _, d := range ds {
		if d.Action == "terminated" {
			terminated++
		}
	}
	fmt.Fprintf(c.ErrOrStderr(), "monkey stopped: %d decision(s), %d termination(s); journal %s\n", len(ds), terminated, filepath.Join(o.out, "monkey.jsonl"))
	if ctx.Err() != nil && (opts.Until.IsZero() || time.Now().Before(opts.Until)) {
		// Halted, interrupted, or a kill switch that could not be read.
		return &exitError{ExitAborted, fmt.Errorf("stopped: %w", context.Cause(ctx))}
	}
	return nil
}

// printMembers lists what each group selects now.
func printMembers(ctx context.Context, w io.Writer, m *monkey.Config) {
	fmt.Fprintln(w, "members now (each group is looked up again whenever it is considered):")
	for _, gr := range m.Groups {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		members, err := monkey.Members(lctx, gr)
		cancel()
		switch {
		case err != nil:
			fmt.Fprintf(w, "  group %s: %s\n", gr.Name, strings.ReplaceAll(err.Error(), "\n", "\n    "))
		case len(members) == 0:
			fmt.Fprintf(w, "  group %s: none now\n", gr.Name)
		default:
			if len(members) > 10 {
				members = append(members[:10], fmt.Sprintf("and %d more", len(members)-10))
			}
			fmt.Fprintf(w, "  group %s: %s\n", gr.Name, strings.Join(members, "\n    "+strings.Repeat(" ", len(gr.Name)+8)))
		}
	}
}

// printMonkey says what the monkey will do.
func printMonkey(w io.Writer, m *monkey.Config) {
	days := make([]string, len(m.Days))
	for i, d := range m.Days {
		days[i] = d.String()[:3]
	}
	fmt.Fprintf(w, "faultline monkey (%s): %s, %s-%s %s; mean %v between terminations, at least %v apart, at most %d a day, per group\n",
		map[bool]string{true: "leashed: nothing is terminated", false: "unleashed"}[m.Leashed], strings.Join(days, " "),
		fmtClock(m.From), fmtClock(m.To), m.Location, m.MeanTimeBetween, m.MinGap, m.DailyCap)
	for _, gr := range m.Groups {
		if gr.Pods != nil {
			fmt.Fprintf(w, "  group %s: pods %s in namespace %s, deleted with grace 0\n", gr.Name, gr.Pods.Selector, gr.Pods.Namespace)
			continue
		}
		fmt.Fprintf(w, "  group %s: %s%s, %s\n", gr.Name, describeProcess(gr.Processes), describeEnv(gr.Env), gr.Signal)
	}
}

func fmtClock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60)
}

func describeProcess(p *monkey.Processes) string {
	switch {
	case p.PID != 0:
		return fmt.Sprintf("pid %d", p.PID)
	case p.PIDFile != "":
		return "pidfile " + p.PIDFile
	}
	return fmt.Sprintf("processes matching %q", p.Match)
}

func describeEnv(env map[string]string) string {
	if len(env) == 0 {
		return ""
	}
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	return " with " + strings.Join(kv, " ")
}
