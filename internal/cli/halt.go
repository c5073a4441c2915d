package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/state"
)

func newHaltCmd(g *globals) *cobra.Command {
	var reason, namespace, kubeconfig string
	cmd := &cobra.Command{
		Use:   "halt",
		Short: "Kill switch: abort every run, remove every toxic, start nothing new",
		Long: `Engage the kill switch in the state directory. Within a second every
faultline run, demo and serve on this machine that uses the same state
directory sees it: runs abort and roll back (exit 3), 'faultline serve'
removes all its toxics and enables every proxy, and new runs are refused
(exit 4) until 'faultline resume'. Until then 'faultline serve' answers 409
to what would inject or remove the set-up (creating, changing, disabling
or deleting a proxy, adding or changing a toxic); removing toxics,
enabling proxies and /reset still work.

With --namespace, the switch is the faultline/halt annotation on a
Kubernetes namespace instead: runs and monkeys acting on it abort.`,
		Example: "  faultline halt --reason \"checkout p99 paging\"\n  faultline resume",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if namespace != "" {
				note := reason
				if note == "" {
					note = "halted"
				}
				note += " at " + time.Now().UTC().Format(time.RFC3339)
				if err := setNamespaceHalt(c.Context(), kubeconfig, namespace, note); err != nil {
					return failure(err)
				}
				_, err := fmt.Fprintf(c.OutOrStdout(), "halted namespace %s (annotation %s): runs and monkeys acting on it abort within 1 s; 'faultline resume --namespace %s' to allow them again\n", namespace, kube.HaltAnnotation, namespace)
				return err
			}
			if err := state.Halt(g.state(), reason); err != nil {
				return failure(err)
			}
			runs, _ := state.Runs(g.state())
			live := 0
			for _, r := range runs {
				if r.Alive() {
					live++
				}
			}
			_, err := fmt.Fprintf(c.OutOrStdout(), "halted (%s): %d run(s) in progress abort and roll back within 1 s; 'faultline resume' to allow runs again\n", g.state(), live)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the halt")
	cmd.Flags().StringVar(&namespace, "namespace", "", "halt in a Kubernetes `namespace` instead (the faultline/halt annotation)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig `file` for --namespace (default $KUBECONFIG, ~/.kube/config, in-cluster)")
	return cmd
}

func setNamespaceHalt(ctx context.Context, kubeconfig, namespace, note string) error {
	c, err := kube.Open(kubeconfig)
	if err != nil {
		return err
	}
	return c.SetHalt(ctx, namespace, note)
}

func newResumeCmd(g *globals) *cobra.Command {
	var namespace, kubeconfig string
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Release the kill switch: runs may start again",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if namespace != "" {
				if err := setNamespaceHalt(c.Context(), kubeconfig, namespace, ""); err != nil {
					return failure(err)
				}
				_, err := fmt.Fprintf(c.OutOrStdout(), "resumed namespace %s: runs may act on it again\n", namespace)
				return err
			}
			if err := state.Resume(g.state()); err != nil {
				return failure(err)
			}
			_, err := fmt.Fprintln(c.OutOrStdout(), "resumed: runs may start again")
			return err
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "", "resume a Kubernetes `namespace` halted with 'halt --namespace'")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig `file` for --namespace")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "List the runs in progress and what each has injected now",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			w, reg := c.OutOrStdout(), builtin.Registry()
			if halted, note := state.Halted(g.state()); halted {
				since, reason := haltNote(note)
				if reason == "" {
					reason = "(none given: 'faultline halt --reason' records one)"
				}
				fmt.Fprintf(w, "HALTED since %s\n  reason: %s\n  new runs are refused, 'faultline serve' refuses new faults; 'faultline resume' releases it\n", since, reason)
			}
			runs, err := state.Runs(g.state())
			if err != nil {
				return failure(err)
			}
			if len(runs) == 0 {
				fmt.Fprintln(w, "no runs in progress")
				return nil
			}
			for _, r := range runs {
				status := "running"
				if !r.Alive() {
					status = "DEAD (its runner is gone: run 'faultline recover')"
				}
				fmt.Fprintf(w, "%s  pid %d  %s  %s\n", r.Name, r.Runner.PID, status, r.Out)
				events, err := journal.ReadFile(journalOf(r.Out))
				var damaged *journal.DamagedError
				if errors.As(err, &damaged) {
					fmt.Fprintf(w, "  warning: %v\n", err)
				} else if err != nil {
					continue
				}
				// A live run has in place what it has not reverted; a dead
				// one left what has an undo (a toxic on a proxy inside the
				// runner ended with it).
				open, label := journal.Open(events), "injected"
				if !r.Alive() {
					open, label = journal.Pending(events), "left injected"
				}
				for _, e := range open {
					switch {
					case e.Launches(): // a target's process, not a fault
					case e.Undo != nil:
						fmt.Fprintf(w, "  %s: %s (%s)\n", label, e.Name, reg.InPlace(e))
					case e.Message != "":
						fmt.Fprintf(w, "  %s: %s (%s)\n", label, e.Name, e.Message)
					default:
						fmt.Fprintf(w, "  %s: %s\n", label, e.Name)
					}
				}
			}
			return nil
		},
	}
}
