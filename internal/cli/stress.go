package cli

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

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/stress"
)

// stressFlags are the flags every stress command takes.
type stressFlags struct {
	duration time.Duration
	asJSON   bool
	// journaled: a run started this stress and journals it; otherwise the
	// stress registers itself in the state directory, with a journal.
	journaled bool
}

func newStressCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "stress",
		Short: "Exhaust CPU, memory, disk or connections on purpose, undone on exit",
		Long: `Each stress command takes a resource away until --duration passes, Ctrl-C,
SIGTERM or 'faultline halt' (exit 3), then gives it back: workers stop, memory
is released, the fill file is removed, connections are closed. It prints one
line when the stress is in place ("ready: ...") and, at the end, what it
measured (--json: one JSON object), as evidence that it took effect.

In experiments the same stresses are faults (cpu, memory, disk_fill,
connections); the run starts them as child processes that die with it.`,
		Example: `  faultline stress cpu --workers 2 --load 80 --duration 30s
  faultline stress memory --size 512MiB --rate 64MiB
  faultline stress disk --path /var/log --free 50MiB
  faultline stress connections --address 127.0.0.1:8080 --count 200 --mode slow
  faultline stress connections --protocol postgres --dsn postgres://app@127.0.0.1/app --count 95`,
	})
	cmd.AddCommand(newStressCPUCmd(g), newStressMemoryCmd(g), newStressDiskCmd(g), newStressConnsCmd(g))
	return cmd
}

func addStressFlags(cmd *cobra.Command, f *stressFlags) {
	cmd.Flags().DurationVar(&f.duration, "duration", 0, "how long to hold (default: until Ctrl-C, SIGTERM or halt)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the final measurements as one JSON object (the ready line goes to stderr)")
	cmd.Flags().BoolVar(&f.journaled, "journaled-by-run", false, "")
	_ = cmd.Flags().MarkHidden("journaled-by-run")
}

// runStress runs one stress until its end, printing the ready line and the
// result. Started by hand, it registers itself in the state directory with
// a journal of its own, so that status and halt see it and recover removes
// a fill file (fillFile) that a SIGKILL left behind.
func runStress(c *cobra.Command, g *globals, f stressFlags, run func(ctx context.Context, ready func()) (stress.Result, error), describe, fillFile string) error {
	if f.duration < 0 {
		return usagef("--duration %v: want a positive duration, or none to hold until stopped", f.duration)
	}
	stateDir := g.state()
	ctx, stop, err := killSwitch(c, stateDir)
	if err != nil {
		return err
	}
	defer stop()
	if !f.journaled {
		done, err := journalStress(c, stateDir, fillFile)
		switch {
		case err != nil && fillFile != "":
			// A fill nothing could recover after a SIGKILL is not started.
			return failure(fmt.Errorf("cannot journal the fill in the state directory: %w", err))
		case err != nil:
			fmt.Fprintf(c.ErrOrStderr(), "warning: cannot register in the state directory (%v): status and halt will not see this stress\n", err)
		default:
			defer done()
		}
	}
	held := ctx
	if f.duration > 0 {
		var cancel context.CancelFunc
		held, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	out, status := c.OutOrStdout(), c.OutOrStdout()
	if f.asJSON && !f.journaled { // (a run reads both from stdout)
		status = c.ErrOrStderr() // stdout holds the JSON alone
	}
	res, err := run(held, func() { fmt.Fprintf(status, "ready: %s\n", describe) })
	if errors.Is(err, stress.ErrRefused) {
		return usagef("%v", err)
	}
	if err != nil {
		return &exitError{ExitError, err}
	}
	if f.asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", b)
	} else {
		fmt.Fprintf(out, "done: %s; given back\n", res)
	}
	if ctx.Err() != nil && !f.journaled { // a signal or a halt, not --duration (a run stops its own with SIGTERM)
		return &exitError{ExitAborted, fmt.Errorf("stopped (%v): stress undone", context.Cause(ctx))}
	}
	return nil
}

// journalStress registers a stress started by hand and journals what a
// SIGKILL would leave (a fill file); the returned func ends both.
func journalStress(c *cobra.Command, stateDir, fillFile string) (func(), error) {
	dir := filepath.Join(stateDir, "stress", fmt.Sprintf("%s-%d-%d", c.Name(), os.Getpid(), time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	j, err := journal.Create(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		return nil, err
	}
	self, _ := process.Identify(os.Getpid())
	if err := j.Append(journal.Event{Type: journal.RunStart, Name: "stress " + c.Name(), Runner: &self}); err != nil {
		j.Close()
		return nil, err
	}
	if fillFile != "" {
		if err := j.Append(journal.Event{Type: journal.Intent, ID: "1", Name: "stress disk",
			Undo: &journal.Undo{Kind: "remove_file", Path: fillFile}, Message: "fill " + fillFile}); err != nil {
			j.Close()
			return nil, err
		}
	}
	deregister := registerRun(c.ErrOrStderr(), stateDir, "stress "+c.Name(), dir)
	return func() {
		var errs []error
		if fillFile != "" {
			errs = append(errs, j.Append(journal.Event{Type: journal.Undone, ID: "1"}))
		}
		errs = append(errs, j.Append(journal.Event{Type: journal.RunEnd}), j.Close())
		if err := errors.Join(errs...); err != nil {
			// Registered and journaled as unfinished, it is recover's to end.
			fmt.Fprintf(c.ErrOrStderr(), "faultline: the stress's journal could not take its end (%v): run 'faultline recover %s' to make sure nothing is left\n", err, dir)
			return
		}
		deregister()
		_ = os.RemoveAll(dir) // ended cleanly: nothing to keep
	}, nil
}

func newStressCPUCmd(g *globals) *cobra.Command {
	var f stressFlags
	var workers, load int
	cmd := &cobra.Command{
		Use:     "cpu",
		Short:   "Keep N workers busy at L % each",
		Example: "  faultline stress cpu --workers 2 --load 80 --duration 30s",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if workers < 1 || load < 1 || load > 100 {
				return usagef("want --workers >= 1 and --load from 1 to 100")
			}
			return runStress(c, g, f, func(ctx context.Context, ready func()) (stress.Result, error) {
				return stress.CPU(ctx, workers, load, ready)
			}, fmt.Sprintf("%d worker(s) at %d%%", workers, load), "")
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 1, "busy `workers` (threads)")
	cmd.Flags().IntVar(&load, "load", 100, "`percent` of the time each worker is busy, 1-100")
	addStressFlags(cmd, &f)
	return cmd
}

func newStressMemoryCmd(g *globals) *cobra.Command {
	var f stressFlags
	var size, rate string
	cmd := &cobra.Command{
		Use:     "memory",
		Short:   "Allocate and touch memory, and hold it",
		Example: "  faultline stress memory --size 512MiB\n  faultline stress memory --size 2GiB --rate 100MiB   # grow 100 MiB a second",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			n, err := positiveSize("--size", size)
			if err != nil {
				return err
			}
			var r int64
			if rate != "" {
				if r, err = stress.ParseSize(rate); err != nil {
					return usagef("--rate: %v", err)
				}
			}
			// If memory runs out, the kernel's OOM killer should end this
			// stress, not a service of the machine.
			_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
			return runStress(c, g, f, func(ctx context.Context, ready func()) (stress.Result, error) {
				return stress.Memory(ctx, n, r, ready)
			}, stress.FormatSize(n)+" allocated and touched", "")
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "`size` to hold, e.g. 512MiB")
	cmd.Flags().StringVar(&rate, "rate", "", "grow by this `size` a second (default: all at once)")
	addStressFlags(cmd, &f)
	return cmd
}

// positiveSize reads a flag's size (512MiB), which must be more than 0.
func positiveSize(flag, v string) (int64, error) {
	n, err := stress.ParseSize(v)
	switch {
	case err != nil:
		return 0, usagef("%s: %v", flag, err)
	case n <= 0:
		return 0, usagef("%s %q: want a size > 0", flag, v)
	}
	return n, nil
}

func newStressDiskCmd(g *globals) *cobra.Command {
	var f stressFlags
	var cfg stress.FillConfig
	var free, fill string
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Fill a file system until only so much is free, then remove the file",
		Long: `Writes a file in --path until its file system has only --free left (a size, or a
percentage such as 5%), or writes exactly --fill bytes. The file is removed when
the command ends (and by 'faultline recover' if a run using it was killed).
Filling the root file system (/) is refused unless --allow-root.`,
		Example: "  faultline stress disk --path /var/log --free 50MiB\n  faultline stress disk --path /data --free 2% --duration 1m",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Dir == "" {
				return usagef("--path is required")
			}
			switch {
			case free != "" && fill != "":
				return usagef("--free or --fill, not both")
			case strings.HasSuffix(free, "%"):
				p, err := strconv.ParseFloat(strings.TrimSuffix(free, "%"), 64)
				if err != nil || p <= 0 || p >= 100 {
					return usagef("--free %q: want a percentage between 0 and 100", free)
				}
				cfg.FreePercent = p
			case free != "":
				n, err := positiveSize("--free", free)
				if err != nil {
					return err
				}
				cfg.Free = n
			case fill != "":
				n, err := positiveSize("--fill", fill)
				if err != nil {
					return err
				}
				cfg.Fill = n
			default:
				return usagef("give --free SIZE|PERCENT or --fill SIZE")
			}
			if cfg.File == "" {
				cfg.File = filepath.Join(cfg.Dir, fmt.Sprintf(".faultline-fill-%d", os.Getpid()))
			}
			if abs, err := filepath.Abs(cfg.File); err == nil {
				cfg.File = abs
			}
			return runStress(c, g, f, func(ctx context.Context, ready func()) (stress.Result, error) {
				return stress.Fill(ctx, cfg, ready)
			}, "file system of "+cfg.Dir+" filled", cfg.File)
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "path", "", "a `directory` on the file system to fill")
	cmd.Flags().StringVar(&cfg.File, "file", "", "the fill file's `path` (default PATH/.faultline-fill-PID)")
	cmd.Flags().StringVar(&free, "free", "", "leave this much free: a `size` or a percentage (5%)")
	cmd.Flags().StringVar(&fill, "fill", "", "write exactly this `size`")
	cmd.Flags().BoolVar(&cfg.AllowRoot, "allow-root", false, "allow filling the root file system")
	addStressFlags(cmd, &f)
	return cmd
}

func newStressConnsCmd(g *globals) *cobra.Command {
	var f stressFlags
	var cfg stress.ConnConfig
	cmd := &cobra.Command{
		Use:   "connections",
		Short: "Open and hold N connections: exhaust a server's pool or max_connections",
		Long: `Opens --count TCP connections to --address and holds them: --mode idle sends
nothing, --mode slow sends an HTTP request one byte a second and never ends it.
With --protocol postgres it holds authenticated sessions on --dsn instead, which
is what PostgreSQL counts against max_connections. While fewer than --count
are held, it keeps trying, so a slot another client gives back is taken too.`,
		Example: "  faultline stress connections --address 127.0.0.1:8080 --count 500\n  faultline stress connections --protocol postgres --dsn postgres://app@127.0.0.1:5432/app --count 95",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case cfg.Count < 1:
				return usagef("--count must be at least 1")
			case cfg.Protocol == "postgres" && cfg.DSN == "":
				return usagef("--protocol postgres needs --dsn")
			case cfg.Protocol == "tcp" && cfg.Address == "":
				return usagef("--address is required")
			case cfg.Protocol != "tcp" && cfg.Protocol != "postgres":
				return usagef("--protocol %q: want tcp or postgres", cfg.Protocol)
			case cfg.Mode != "idle" && cfg.Mode != "slow":
				return usagef("--mode %q: want idle or slow", cfg.Mode)
			}
			return runStress(c, g, f, func(ctx context.Context, ready func()) (stress.Result, error) {
				return stress.Connections(ctx, cfg, ready)
			}, fmt.Sprintf("%d connection(s) held", cfg.Count), "")
		},
	}
	cmd.Flags().StringVar(&cfg.Address, "address", "", "`HOST:PORT` to connect to")
	cmd.Flags().IntVar(&cfg.Count, "count", 10, "connections to hold")
	cmd.Flags().StringVar(&cfg.Mode, "mode", "idle", "`idle` (send nothing) or slow (an endless request, a byte a second)")
	cmd.Flags().StringVar(&cfg.Protocol, "protocol", "tcp", "`tcp` or postgres (authenticated sessions)")
	cmd.Flags().StringVar(&cfg.DSN, "dsn", "", "PostgreSQL `URL` for --protocol postgres")
	addStressFlags(cmd, &f)
	return cmd
}
