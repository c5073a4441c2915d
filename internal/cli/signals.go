package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// interruptible returns a context that the first stop signal (Ctrl-C,
// SIGTERM, a hangup) ends, with the signal as its cause: the run rolls
// back. A second Ctrl-C or SIGTERM closes hurry (revert, kill what was
// launched, skip the reports); a third exits at once, after saying how to
// recover what is left. Only a person escalates: a closing terminal may
// send SIGHUP more than once. stop ends the watch.
func interruptible(parent context.Context, stderr io.Writer, out string) (ctx context.Context, hurry <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, stopSignals()...)
	finished := make(chan struct{})
	hurried := make(chan struct{})
	go func() {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-finished:
			return
		}
		// On a terminal, first clear the line the run redraws.
		clear := ""
		if isTerminal(stderr) {
			clear = "\r\033[K"
		}
		fmt.Fprintln(stderr, clear+"interrupted: rolling back (interrupt again to exit as soon as every fault is reverted)")
		cancel(fmt.Errorf("%v signal received", sig))
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
		fmt.Fprintln(stderr, clear+"exiting as soon as every fault is reverted (interrupt a third time to exit now)")
		close(hurried)
		if again() {
			fmt.Fprintf(stderr, "exiting now: if anything is left, run 'faultline recover %s'\n", out)
			os.Exit(ExitAborted)
		}
	}()
	return ctx, hurried, func() {
		signal.Stop(sigs)
		close(finished)
		cancel(nil)
	}
}
