package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/examples/experiments"
	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/plan"
	"github.com/faultline/faultline/report"
	"github.com/faultline/faultline/runner"
)

// demoHelp is 'faultline demo --help'.
const demoHelp = `Runs the demo shop's experiments (examples/experiments) against its fragile
build and then its resilient one, and ends with a table: experiment x build,
verdict, p99 and error rate during the fault, time to recover, and the finding;
then, for each experiment, the weakness the fragile build has and the fix the
resilient one has, a sentence each, with the lines of examples/shop that are
each.

  cache-dies       kill the Redis cache; restarted when the fault ends
  db-primary-down  freeze PostgreSQL (SIGSTOP) for 10 s
  slow-payment     the card processor answers 8 s late
  half-instances   kill 50 % of the checkout instances
  zone-outage      zone a's instances cut off the network (a partition, as
                   root with nf_tables), else killed

With --all, also the wider checklist's:

  service-unreachable  no packet passes between checkout and the card
                       processor (in a network namespace of its own, as root)
  payment-errors       the card processor answers 500 to half the charges
  payment-malformed    its answers come back with status null, charge_id gone
  dns-fails            the processor's name answers SERVFAIL (checkout's own
                       lookups intercepted in its network namespace, as root;
                       else checkout is pointed at faultline's resolver)
  db-pool-exhausted    another client holds every PostgreSQL connection for 10 s
  disk-fills           the log volume fills up (a tmpfs the demo mounts, as root)
  queue-down           the message broker (NATS) is killed for 10 s
  memory-pressure      the card processor is killed as the OOM killer would (simulated)
  cpu-spike            the card processor gets 1 % of a core (a cgroup quota, as root)
  db-nulls             two products' prices turn NULL in PostgreSQL
  schema-mismatch      the processor's answers change shape (a field retyped, one renamed)

and last, on no checklist: db-packet-loss, 20 % of the packets between
checkout and PostgreSQL lost each way (nftables, as root), and error-alert:
payment errors again, the run stopped by Prometheus's ErrorRateTooHigh alert
on the shop's /metrics (Debian's prometheus), as the blog's experiment stops
on its CloudWatch alarm.

With --checklist, every experiment runs (as with --all) and the end is the
quarterly checklist: its 15 failures in four groups (dependencies, data
stores, capacity, data integrity), each with the experiment that covers it
and both builds' verdicts, or why it did not run here.

The fragile build should fail each (FAILED, or ABORTED when a stop condition
fires); the resilient build should pass each. Everything runs on free
loopback ports: the shop's parts come from this binary, the database is
PostgreSQL when installed (else SQLite, and the experiments that need a
PostgreSQL server, db-primary-down, db-pool-exhausted, db-nulls and
db-packet-loss, are skipped), the
cache is Debian's redis-server when installed (else an embedded one).
Nothing is left running or injected, also on Ctrl-C.

Each run is an ordinary run directory (result.json, journal.jsonl,
samples.jsonl, processes.log, report.html) under --out:
DIR/EXPERIMENT/BUILD/, with DIR/summary.md (the tables and the stories, for
a pull request or a wiki) and DIR/summary.json for all of them.

Exit codes: 0 when every fragile run found its weakness and every resilient
run passed, 1 otherwise, 3 when interrupted or halted, 4 on error.`

func newDemoCmd(g *globals) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Break a small shop on purpose, before and after a fix: the whole story in one command",
		Long:  demoHelp,
		Example: `  faultline demo
  faultline demo --only slow-payment
  faultline demo --checklist                     # the quarterly checklist, all 15
  faultline demo --out demo-runs --real
  faultline demo --db sqlite --cache embedded    # as on a machine without either`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.checklist {
				o.all = true
			}
			if o.real {
				o.db, o.cache = "postgres", "redis"
			}
			if !slices.Contains([]string{"auto", "postgres", "sqlite"}, o.db) {
				return usagef("--db %q: want auto, postgres or sqlite", o.db)
			}
			if !slices.Contains([]string{"auto", "redis", "embedded"}, o.cache) {
				return usagef("--cache %q: want auto, redis or embedded", o.cache)
			}
			known := experiments.All()
			for _, n := range o.only {
				if !slices.Contains(known, n) {
					return usagef("--only %q: no such experiment; known: %s", n, strings.Join(known, ", "))
				}
			}
			stateDir := g.state()
			ctx, stop, err := killSwitch(c, stateDir)
			if err != nil {
				return err
			}
			defer stop()
			if o.out == "" {
				o.out = filepath.Join("faultline-runs", "demo-"+time.Now().UTC().Format("20060102T150405Z"))
			}
			if o.seedFlag != "" {
				if _, err := fmt.Sscan(o.seedFlag, &o.seed); err != nil || o.seed == 0 {
					return usagef("--seed %q: want a non-zero whole number", o.seedFlag)
				}
			} else {
				o.seed = time.Now().UnixNano() | 1 // one seed for every run, recorded in each
			}
			o.stateDir = stateDir
			sum, err := runShopDemo(ctx, c.OutOrStdout(), c.ErrOrStderr(), o)
			if err != nil {
				return failure(err)
			}
			switch {
			case ctx.Err() != nil:
				return &exitError{ExitAborted, fmt.Errorf("interrupted: every fault was reverted; runs so far are in %s", o.out)}
			case !sum.AsExpected:
				return &exitError{ExitFailed, fmt.Errorf("not every run ended as expected: see the table")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.only, "only", nil, "run only the experiment `NAME` (repeatable, or comma-separated)")
	f.StringVar(&o.out, "out", "", "`directory` for every run (default faultline-runs/demo-UTCSTAMP)")
	f.BoolVar(&o.real, "real", false, "insist on real PostgreSQL and redis-server: fail instead of falling back")
	f.StringVar(&o.db, "db", "auto", "`auto` (PostgreSQL when installed, else SQLite), postgres or sqlite")
	f.StringVar(&o.cache, "cache", "auto", "`auto` (redis-server when installed, else embedded), redis or embedded")
	f.BoolVar(&o.all, "all", false, "also run the rest of the quarterly checklist's experiments (service-unreachable, payment-errors, payment-malformed, dns-fails, db-pool-exhausted, disk-fills, queue-down, memory-pressure, cpu-spike, db-nulls, schema-mismatch), then db-packet-loss and error-alert")
	f.BoolVar(&o.checklist, "checklist", false, "run every experiment (as --all) and end with the quarterly checklist: its 15 failures in four groups, each with the experiment that covers it and both builds' verdicts")
	f.BoolVar(&o.quiet, "quiet", false, "no per-second progress, only a line per run")
	f.StringVar(&o.seedFlag, "seed", "", "`seed` of every run's random choices, to replay a demo (default: picked, and printed in each run's replay command)")
	return cmd
}

type demoOptions struct {
	db, cache string
	seedFlag  string
	seed      int64
	only      []string
	out       string
	real      bool
	all       bool
	checklist bool
	quiet     bool
	stateDir  string
}

// demoSummary is DIR/summary.json.
type demoSummary struct {
	Started    runner.Stamp `json:"started"`
	Ended      runner.Stamp `json:"ended"`
	Database   string       `json:"database"`
	Cache      string       `json:"cache"`
	Runs       []demoRow    `json:"runs"`
	Skipped    []demoSkip   `json:"skipped"`
	Compares   []string     `json:"compares"`
	AsExpected bool         `json:"as_expected"`
}

type demoRow struct {
	Experiment    string   `json:"experiment"`
	Build         string   `json:"build"`
	Verdict       string   `json:"verdict"`
	Expected      bool     `json:"expected"` // fragile found the weakness, resilient passed
	P99           *float64 `json:"inject_p99"`
	ErrorRate     *float64 `json:"inject_error_rate"`
	TimeToRecover *float64 `json:"time_to_recover"`
	Finding       string   `json:"finding"`
	Dir           string   `json:"dir"`
	Broken        []string `json:"broken"` // "PHASE: CONDITION" of every check that did not hold, and fired stop conditions
}

type demoSkip struct {
	Experiment string `json:"experiment"`
	Reason     string `json:"reason"`
}

// demoZones places the instances of the zone slots a, b, c: the fragile
// shop runs every instance in zone a.
var demoZones = map[shop.Build][3]string{shop.Fragile: {"a", "a", "a"}, shop.Resilient: {"a", "b", "c"}}

func runShopDemo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) (*demoSummary, error) {
	sum := &demoSummary{Started: runner.Stamp(time.Now()), Runs: []demoRow{}, Skipped: []demoSkip{}, Compares: []string{}}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	// The cache: Debian's redis-server, else the embedded one.
	cacheServer := "redis"
	switch {
	case o.cache == "embedded":
		cacheServer, sum.Cache = "embedded", "embedded Redis-protocol server (--cache embedded)"
	case shop.RedisServer() != "":
		sum.Cache = "redis-server (" + shop.RedisServer() + ")"
	case o.cache == "redis":
		return nil, fmt.Errorf("--cache redis: redis-server is not installed (apt-get install redis-server)")
	default:
		cacheServer, sum.Cache = "embedded", "embedded Redis-protocol server (redis-server is not installed)"
	}
	// The database: PostgreSQL in a temporary directory, else SQLite.
	var pg *shop.Postgres
	sum.Database = "SQLite (--db sqlite)"
	if o.db != "sqlite" {
		_, err := shop.FindPostgres()
		if err == nil {
			fmt.Fprintln(stderr, "demo: starting PostgreSQL in a temporary directory")
			logf, _ := os.Create(filepath.Join(o.out, "postgres.log"))
			if logf != nil {
				defer logf.Close()
			}
			if pg, err = shop.StartPostgres(ctx, shop.PostgresConfig{Log: logf}); err == nil {
				defer pg.Stop()
				sum.Database = fmt.Sprintf("PostgreSQL on %s (pid %d)", pg.Addr(), pg.PID())
			}
		}
		switch {
		case err != nil && o.db == "postgres":
			return nil, fmt.Errorf("--db postgres: %w", err)
		case err != nil:
			fmt.Fprintf(stderr, "demo: no PostgreSQL (%v): the shop uses SQLite\n", err)
			sum.Database = "SQLite (PostgreSQL: " + err.Error() + ")"
		}
	}
	fmt.Fprintf(stderr, "demo: database %s; cache %s; runs in %s\n", sum.Database, sum.Cache, o.out)
	names := experiments.Order
	if o.all {
		names = experiments.All()
	}
	if len(o.only) > 0 {
		names = o.only
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		if why := demoSkipReason(name, pg); why != "" {
			sum.Skipped = append(sum.Skipped, demoSkip{name, why})
			fmt.Fprintf(stderr, "demo: skipping %s: it %s\n", name, why)
			continue
		}
		for _, build := range []shop.Build{shop.Fragile, shop.Resilient} {
			if ctx.Err() != nil {
				break
			}
			row, err := demoRun(ctx, stderr, o, pg, cacheServer, name, build)
			if err != nil {
				return nil, fmt.Errorf("%s (%s): %w", name, build, err)
			}
			sum.Runs = append(sum.Runs, row)
			mark := "as expected"
			if !row.Expected {
				mark = "NOT as expected"
			}
			fmt.Fprintf(stderr, "demo: %s %s: %s (%s): %s\n", name, build, row.Verdict, mark, row.Finding)
		}
		if n := len(sum.Runs); n >= 2 && sum.Runs[n-2].Experiment == name && sum.Runs[n-1].Experiment == name {
			path := filepath.Join(o.out, name, "compare.html")
			if err := demoCompare(path, sum.Runs[n-2].Dir, sum.Runs[n-1].Dir); err != nil {
				fmt.Fprintf(stderr, "demo: %s: comparison not written: %v\n", name, err)
			} else {
				sum.Compares = append(sum.Compares, path)
			}
		}
	}
	sum.Ended = runner.Stamp(time.Now())
	sum.AsExpected = len(sum.Runs) > 0 && ctx.Err() == nil
	for _, r := range sum.Runs {
		sum.AsExpected = sum.AsExpected && r.Expected
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := writeDemoMarkdown(filepath.Join(o.out, "summary.md"), sum, o.checklist); err != nil {
		return nil, err
	}
	printDemoTable(stdout, sum, o.out, o.checklist)
	return sum, nil
}

// demoSkipReason says why an experiment cannot run on this machine ("needs
// ..."), or "" when it can.
func demoSkipReason(name string, pg *shop.Postgres) string {
	switch why, ok := needsPostgres[name]; {
	case name == "disk-fills" && !canMountTmpfs():
		return "needs a small tmpfs for the log volume, which only root can mount here"
	case name == "cpu-spike" && !canLimitCPU():
		return "needs a cgroup of its own for the card processor (a writable cpu controller), which only root has here"
	case name == "error-alert" && !installed("prometheus"):
		return "needs Prometheus to raise ErrorRateTooHigh: apt-get install prometheus"
	case name == "service-unreachable" && networkLacks() != "":
		return "needs a network namespace for the card processor and nftables rules in it: " + networkLacks()
	case name == "db-packet-loss" && networkLacks() != "":
		return "needs nftables rules that drop packets to the database: " + networkLacks()
	case ok && pg == nil:
		return "needs PostgreSQL (" + why + "): apt-get install postgresql"
	case name == "db-nulls" && !installed("psql"):
		return "needs psql to null the rows and put them back: apt-get install postgresql-client"
	}
	return ""
}

// demoCompare writes the side-by-side comparison of an experiment's two
// runs.
func demoCompare(path, dirA, dirB string) error {
	a, errA := report.Load(dirA)
	b, errB := report.Load(dirB)
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	return writeCompare(path, a, b)
}

// needsPostgres are the experiments that only run against a PostgreSQL
// server, and why.
var needsPostgres = map[string]string{
	"db-primary-down":   "a database server process to freeze",
	"db-pool-exhausted": "a database server whose connection slots can run out",
	"db-nulls":          "rows that psql nulls and puts back",
	"db-packet-loss":    "a network to lose packets on, which SQLite has not",
}

// demoFile is the file an experiment of the demo runs from. Where the
// machine can make network faults (root, nf_tables), zone-outage is a real
// network partition of the zone (elsewhere the zone's instances are
// killed), and dns-fails intercepts the lookups checkout makes through the
// system's resolver (elsewhere checkout is pointed at faultline's).
func demoFile(name string) string {
	if (name == "zone-outage" || name == "dns-fails") && networkLacks() == "" {
		return name + "-net"
	}
	return name
}

// demoRun runs one experiment against one build.
func demoRun(ctx context.Context, stderr io.Writer, o demoOptions, pg *shop.Postgres, cacheServer, name string, build shop.Build) (demoRow, error) {
	row := demoRow{Experiment: name, Build: string(build), Dir: filepath.Join(o.out, name, string(build)), Broken: []string{}}
	file := demoFile(name)
	data, err := experiments.File(file)
	if err != nil {
		return row, err
	}
	z := demoZones[build]
	vars := map[string]string{"BUILD": string(build), "CACHE_SERVER": cacheServer, "ZONE1": z[0], "ZONE2": z[1], "ZONE3": z[2]}
	if pg != nil {
		db := strings.ReplaceAll(name, "-", "_") + "_" + string(build)
		if err := pg.CreateDatabase(ctx, db); err != nil {
			return row, fmt.Errorf("create database %s: %w", db, err)
		}
		vars["DB_URL"], vars["DB_PIDFILE"], vars["DB_ADDR"] = pg.URL(db), pg.PIDFile, pg.Addr()
		vars["DB_MAX_CONNECTIONS"] = strconv.Itoa(pg.MaxConnections)
	}
	if name == "disk-fills" {
		// The log volume: a file system of its own, small enough to fill.
		dir, err := mountTmpfs("8m")
		if err != nil {
			return row, err
		}
		defer unmountTmpfs(dir)
		vars["LOG_DIR"] = dir
	}
	x, err := experiment.Parse(experiments.Path(file), data, experiment.Options{Vars: vars})
	if err != nil {
		return row, err
	}
	if err := os.MkdirAll(filepath.Dir(row.Dir), 0o755); err != nil {
		return row, err
	}
	defer registerRun(stderr, o.stateDir, x.Name, row.Dir)()
	fmt.Fprintf(stderr, "\ndemo: %s against the %s shop: %s\n", name, build, x.Hypothesis)
	progress := stderr
	if o.quiet {
		progress = io.Discard
	}
	p, err := plan.Build(x, plan.Options{Seed: o.seed})
	if err != nil {
		return row, err
	}
	res, err := runner.Run(ctx, p, runner.Options{OutDir: row.Dir, Vars: vars, Progress: progress,
		Replay: demoReplay(o, name), Story: demoStory(name), Prefix: fmt.Sprintf("[%s/%s] ", name, build), Live: isTerminal(progress)})
	if err != nil {
		return row, err
	}
	writeReports(stderr, row.Dir)
	row.Verdict, row.TimeToRecover = res.Verdict, res.TimeToRecover
	for _, t := range res.Traffic {
		if t.Phase == "inject" && t.Request == "" {
			row.P99, row.ErrorRate = &t.P99, &t.ErrorRate
		}
	}
	for _, c := range res.Checks {
		if !c.Held || c.Fired {
			row.Broken = append(row.Broken, c.Phase+": "+c.Condition)
		}
	}
	switch build {
	case shop.Fragile:
		row.Expected = res.Verdict == runner.Failed || res.Verdict == runner.Aborted
	default:
		row.Expected = res.Verdict == runner.Passed
	}
	row.Finding = finding(res)
	return row, nil
}

// demoReplay is the command that runs a demo experiment again, both
// builds, with the same seed and the same choice of database and cache
// (the run's own vars name a temporary PostgreSQL that is gone by then).
func demoReplay(o demoOptions, name string) string {
	cmd := fmt.Sprintf("faultline demo --only %s --seed %d", name, o.seed)
	if o.db != "auto" {
		cmd += " --db " + o.db
	}
	if o.cache != "auto" {
		cmd += " --cache " + o.cache
	}
	return cmd
}

// finding says in one line why a run ended as it did.
func finding(res *runner.Result) string {
	if res.Verdict == runner.Passed {
		return "the hypothesis held in every phase"
	}
	var parts []string
	for _, c := range res.Checks {
		if c.Fired {
			parts = append(parts, "stopped: "+c.Condition)
		}
	}
	more := 0
	for _, c := range res.Checks {
		if c.Held || c.Fired {
			continue
		}
		if len(parts) == 2 {
			more++
			continue
		}
		v := c.Detail
		if c.Value != nil {
			v = runner.FormatValue(*c.Value, c.Unit)
		}
		parts = append(parts, fmt.Sprintf("%s broke in %s (%s)", c.Condition, c.Phase, v))
	}
	if more > 0 {
		parts = append(parts, fmt.Sprintf("%d more", more))
	}
	if len(parts) == 0 && len(res.Reasons) > 0 {
		parts = append(parts, res.Reasons[0])
	}
	return strings.Join(parts, "; ")
}

func printDemoTable(w io.Writer, sum *demoSummary, out string, checklist bool) {
	fmt.Fprintf(w, "\nfaultline demo: %d runs; database %s; cache %s\n\n", len(sum.Runs), sum.Database, sum.Cache)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXPERIMENT\tBUILD\tVERDICT\tP99 (FAULT)\tERRORS (FAULT)\tRECOVERED IN\tFINDING")
	for _, r := range sum.Runs {
		p99, errs, ttr := "-", "-", "never"
		if r.P99 != nil {
			p99 = runner.FormatValue(*r.P99, "s")
		}
		if r.ErrorRate != nil {
			errs = runner.FormatValue(*r.ErrorRate, "ratio")
		}
		if r.TimeToRecover != nil {
			ttr = fmt.Sprintf("%.1fs", *r.TimeToRecover)
		}
		verdict := r.Verdict
		if !r.Expected {
			verdict += " (!)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Experiment, r.Build, verdict, p99, errs, ttr, r.Finding)
	}
	_ = tw.Flush()
	for _, s := range sum.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", s.Experiment, s.Reason)
	}
	printDemoStories(w, sum)
	if checklist {
		printChecklist(w, sum)
	}
	fmt.Fprintf(w, "\nFragile runs should end FAILED or ABORTED (the experiment found the weakness),\nresilient runs PASSED; (!) marks a run that did not.\nEach run: %s/EXPERIMENT/BUILD/report.html (and result.json, junit.xml, summary.md, journal.jsonl)\n",
		out)
	for _, c := range sum.Compares {
		fmt.Fprintf(w, "Side by side: %s\n", c)
	}
	fmt.Fprintf(w, "All runs: %s and %s\n", filepath.Join(out, "summary.md"), filepath.Join(out, "summary.json"))
}

// canMountTmpfs reports whether a tmpfs can be mounted here (root).
func canMountTmpfs() bool {
	dir, err := mountTmpfs("1m")
	if err != nil {
		return false
	}
	unmountTmpfs(dir)
	return true
}

// installed reports whether a program is on PATH.
func installed(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// networkLacks says what this machine lacks for network faults ("" when
// nothing), asked once.
var networkLacks = sync.OnceValue(func() string {
	var say []string
	for _, l := range netfault.Lacks(context.Background()) {
		say = append(say, l.String())
	}
	return strings.Join(say, "; ")
})

// canLimitCPU reports whether cpu-spike can give the card processor a
// cgroup with a CPU quota: cgroup v1's cpu controller or v2's, writable.
func canLimitCPU() bool {
	dir := "/sys/fs/cgroup/cpu" // v1
	if _, err := os.Stat(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
		dir = "/sys/fs/cgroup" // v2
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		if err != nil || !slices.Contains(strings.Fields(string(b)), "cpu") {
			return false
		}
	}
	probe, err := os.MkdirTemp(dir, "faultline-probe-")
	if err != nil {
		return false
	}
	return os.Remove(probe) == nil
}

// mountTmpfs mounts a tmpfs of size on a new temporary directory.
func mountTmpfs(size string) (string, error) {
	dir, err := os.MkdirTemp("", "faultline-logvol-")
	if err != nil {
		return "", err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("mount tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return dir, nil
}

func unmountTmpfs(dir string) {
	if exec.Command("umount", dir).Run() != nil {
		_ = exec.Command("umount", "-l", dir).Run()
	}
	_ = os.Remove(dir)
}
