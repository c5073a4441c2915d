// Package cli wires faultline's commands: flags, output and exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/state"
)

// Exit codes, the same for every command.
const (
	ExitPassed  = 0 // success; an experiment's hypothesis held
	ExitFailed  = 1 // an experiment's hypothesis did not hold
	ExitUsage   = 2 // invalid file, flags or arguments
	ExitAborted = 3 // a stop condition, an interrupt or a halt ended the run
	ExitError   = 4 // could not run, or an internal error
)

const exitCodesHelp = `Exit codes:
  0  passed / success
  1  failed: the hypothesis did not hold
  2  invalid file, flags or arguments
  3  aborted: stop condition, interrupt or halt
  4  error: could not run, or an internal error`

// Version is the faultline version, set at build time with
// -ldflags "-X github.com/faultline/faultline/internal/cli.Version=v1.2.3".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failure marks err as a runtime error (exit 4), or as a usage error
// (exit 2) when an API refused the request as invalid (HTTP 400).
func failure(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var ae *proxy.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return &exitError{ExitUsage, err}
	}
	return &exitError{ExitError, err}
}

// usagef is a usage error (exit 2).
func usagef(format string, args ...any) error {
	return &exitError{ExitUsage, fmt.Errorf(format, args...)}
}

// stopSignals are the signals that end a command that injects or serves,
// which then rolls back: Ctrl-C, SIGTERM, and SIGHUP (its terminal or ssh
// session closed) unless faultline was started ignoring it (nohup).
var stopSignals = sync.OnceValue(func() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
})

// catchSIGPIPE makes a write to a closed output (| head, a terminal gone)
// fail with EPIPE instead of killing faultline before it has rolled back.
// Handled, not ignored: the processes faultline starts get the default.
var catchSIGPIPE = sync.OnceFunc(func() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) })

// ExitBrokenPipe is the exit code when the output was closed before
// faultline finished writing it: what a shell reports for a program that
// SIGPIPE ended.
const ExitBrokenPipe = 128 + int(syscall.SIGPIPE)

// Main runs faultline with args (without the program name) and returns the
// exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == netfault.ExecSubcommand {
		// A launched instance entering its network namespace: nothing else
		// of faultline runs in this process, which becomes the instance.
		err := netfault.ExecMain(args[1:])
		fmt.Fprintf(stderr, "faultline: %v\n", err)
		return 127
	}
	stopSignals()
	catchSIGPIPE()
	root := newRoot(output{stdout}, output{stderr})
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitPassed
	}
	var closed outputError
	if errors.As(err, &closed) && errors.Is(closed.err, syscall.EPIPE) {
		return ExitBrokenPipe // nobody reads what an error message would say
	}
	fmt.Fprintf(stderr, "faultline: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Errors that cobra itself raises: unknown command, bad flag, arguments.
	fmt.Fprintln(stderr, "Run 'faultline --help' for usage.")
	return ExitUsage
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "faultline",
		Short: "Break your own systems on purpose, with a plan, before your users do",
		Long: `faultline is a chaos engineering toolkit: experiments that break your
system on purpose under real traffic and always roll back, and a
fault-injection proxy that speaks Toxiproxy's API.

  faultline demo                          # see it work: break a small shop, before and after a fix (3 min)
  faultline tour                          # the proxy's faults, in a few seconds
  faultline run experiment.yaml           # run an experiment
  faultline halt                          # kill switch: every run aborts and rolls back

Or drive the proxy by hand:

  faultline serve &
  faultline proxy create redis -l 127.0.0.1:26379 -u 127.0.0.1:6379
  faultline toxic add redis -t latency -a latency=1000 -a jitter=100

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// pflag's number errors end in strconv's own words.
		msg := regexp.MustCompile(`: strconv\.Parse\w+: parsing "[^"]*": invalid syntax$`).ReplaceAllString(err.Error(), ": want a number")
		msg = regexp.MustCompile(`: strconv\.Parse\w+: parsing "[^"]*": value out of range$`).ReplaceAllString(msg, ": number out of range")
		return usagef("%s (see '%s --help')", msg, c.CommandPath())
	})
	root.Version = version()
	root.SetVersionTemplate(`faultline {{.Version}}` + fmt.Sprintf(" (%s %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH))
	g := &globals{}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "state `directory`: registered runs and the kill switch (default $FAULTLINE_STATE_DIR, else $XDG_STATE_HOME/faultline, else ~/.local/state/faultline)")
	root.AddCommand(newDemoCmd(g), newTourCmd(g), newVersionCmd(), newServeCmd(g), newProxyCmd(), newToxicCmd(), newValidateCmd(),
		newRunCmd(g), newRecoverCmd(g), newSchemaCmd(), newHaltCmd(g), newResumeCmd(g), newStatusCmd(g), newShopCmd(), newReportCmd(), newCompareCmd(), newDNSCmd(g), newStressCmd(g), newMonkeyCmd(g), newAgentCmd())
	return root
}

// globals are the flags every command takes.
type globals struct {
	stateDir string
}

func (g *globals) state() string { return state.Dir(g.stateDir) }

// killSwitch refuses to start while the kill switch is on (exit 4) and
// returns a context that ends on Ctrl-C, SIGTERM or 'faultline halt'.
func killSwitch(c *cobra.Command, stateDir string) (context.Context, func(), error) {
	if halted, note := state.Halted(stateDir); halted {
		return nil, nil, &exitError{ExitError, fmt.Errorf("halted since %s: 'faultline resume' first", strings.TrimSpace(note))}
	}
	watched, stopWatch := state.Watch(c.Context(), stateDir)
	ctx, stop := signal.NotifyContext(watched, stopSignals()...)
	return ctx, func() { stop(); stopWatch() }, nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print faultline's version",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.OutOrStdout(), "faultline %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", c.CommandPath(), args)
	}
	return nil
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %s, got %d argument(s): see '%s --help'", c.Name(), strings.Join(names, " "), len(args), c.CommandPath())
		}
		return nil
	}
}

// group makes cmd a command that only holds subcommands: without one it
// shows its help; with an unknown one it is a usage error.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			hint := ""
			if c.SuggestionsMinimumDistance <= 0 {
				c.SuggestionsMinimumDistance = 2 // as cobra does for the root
			}
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				hint = fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return usagef("unknown command %q for %q%s: see '%s --help'", args[0], c.CommandPath(), hint, c.CommandPath())
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}

// envOr returns the first non-empty environment variable of names, else def.
func envOr(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

// isTerminal reports whether w is a terminal, where progress can be
// redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// output is faultline's stdout or stderr: its write errors are marked as
// such, so that a closed output (EPIPE) is told apart from a connection
// reset while writing to a server.
type output struct{ w io.Writer }

type outputError struct{ err error }

func (e outputError) Error() string { return e.err.Error() }
func (e outputError) Unwrap() error { return e.err }

func (o output) Write(b []byte) (int, error) {
	n, err := o.w.Write(b)
	if err != nil {
		err = outputError{err}
	}
	return n, err
}

// Fd is the file's descriptor, when the output is a file (a terminal).
func (o output) Fd() uintptr {
	if f, ok := o.w.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

// registerRun registers a run in the state directory, so that 'faultline
// status' lists it and 'faultline halt' reaches it; it warns on w when it
// cannot. The returned function deregisters it.
func registerRun(w io.Writer, stateDir, name, out string) (deregister func()) {
	self, _ := process.Identify(os.Getpid())
	if abs, err := filepath.Abs(out); err == nil {
		out = abs // status and recover may run from another directory
	}
	deregister, err := state.Register(stateDir, state.Run{Name: name, Out: out, Runner: self, Started: time.Now()})
	if err != nil {
		fmt.Fprintf(w, "warning: cannot register the run in %s: %v\n", stateDir, err)
		return func() {}
	}
	return deregister
}
