package cli

import (
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/agent"
)

func newAgentCmd() *cobra.Command {
	var spec string
	cmd := &cobra.Command{
		Use:   "agent --spec JSON",
		Short: "Hold one fault inside a pod (run by faultline in an ephemeral container)",
		Long: `faultline agent is what a run puts in an ephemeral container of a target pod
to act inside it: it shares the pod's network namespace, the target
container's processes and the pod's cgroup, and holds one fault there: a
network fault (partition or packet_loss) as nftables rules in the run's
table faultline_RUNID, an intercept (the pod's connections to somewhere
through a proxy of its own, with toxics or down), a DNS intercept (the
pod's queries answered by a resolver of its own, with rules), a signal to
the target container's processes, or a stress (cpu, memory, connections)
as its child.

You do not run it yourself. The runner adds the container (named
faultline-RUNID-...), attaches to its standard input and speaks a line
protocol: "apply", then "renew" more often than the lease, then "revert".
The agent answers "applied" and, once the rules are gone, "reverted: WHY",
also its container's termination message.

The fault cannot outlive the run: without a renewal for the lease (the
fault's lease:, default 15s) the agent removes the rules by itself and
exits, as it does on "revert", SIGTERM or SIGINT. A network fault needs
NET_ADMIN, which the runner then asks for in the container's
securityContext; a stress needs nothing.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			sp, err := agent.ParseSpec(spec)
			if err != nil {
				return usagef("%v", err)
			}
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, stopSignals()...)
			defer signal.Stop(sigs)
			stop, done := make(chan struct{}), make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-sigs:
					close(stop)
				case <-done:
				}
			}()
			if err := agent.Run(c.Context(), sp, c.InOrStdin(), c.OutOrStdout(), stop); err != nil {
				return failure(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "spec", "", "the fault to hold, as JSON (written by the runner)")
	return cmd
}
