package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/netfault"
)

func newValidateCmd() *cobra.Command {
	var (
		vars                     []string
		allowNoStop, allowRemote bool
		agentImage               string
	)
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check experiment files and print every problem with its place",
		Long: `Check experiment files without running anything. Every problem of every
file is printed at once, as FILE:LINE:COL: FIELD: MESSAGE; an unknown field
suggests the closest known one. Exit 0 when every file is valid, 2 otherwise.

${NAME} in a file comes from --var NAME=VALUE or the environment, else from
its default in ${NAME:-DEFAULT}; an undefined one is a problem. An
experiment needs at least one fault and one stop condition
(--allow-no-stop waives the second).`,
		Example: `  faultline validate experiments/*.yaml
  faultline validate --var HOST=127.0.0.1 slow-payment.yaml`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("validate takes one or more experiment files: see 'faultline validate --help'")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			opts := experiment.Options{AllowNoStop: allowNoStop, Vars: map[string]string{}, AgentImage: agentImage}
			for _, v := range vars {
				name, value, ok := strings.Cut(v, "=")
				if !ok || name == "" {
					return usagef("--var %q: want NAME=VALUE", v)
				}
				opts.Vars[name] = value
			}
			bad := 0
			for _, file := range args {
				x, err := experiment.ParseFile(file, opts)
				if err != nil {
					bad++
					var joined interface{ Unwrap() []error }
					if errors.As(err, &joined) {
						for _, e := range joined.Unwrap() {
							fmt.Fprintln(c.ErrOrStderr(), e)
						}
					} else {
						fmt.Fprintf(c.ErrOrStderr(), "%s: %v\n", file, err)
					}
					continue
				}
				if remote := x.OffLoopback(); len(remote) > 0 && !allowRemote {
					bad++
					fmt.Fprintf(c.ErrOrStderr(), "%s: reaches beyond this machine (%s): faultline run refuses it without --allow-remote\n", file, strings.Join(remote, ", "))
					continue
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: valid: %q, %d targets, %d faults; baseline %v, inject %v, recovery up to %v\n",
					file, x.Name, len(x.Targets), len(x.Faults), x.Baseline, x.Inject, x.Recovery)
				if x.UsesNetwork() {
					for _, l := range netfault.Lacks(c.Context()) {
						fmt.Fprintf(c.OutOrStdout(), "%s: but this machine cannot run it: %s\n", file, l)
					}
				}
			}
			if bad > 0 {
				return &exitError{ExitUsage, fmt.Errorf("%d of %d files invalid", bad, len(args))}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&vars, "var", nil, "`NAME=VALUE` for ${NAME} in the files, repeatable")
	cmd.Flags().BoolVar(&allowNoStop, "allow-no-stop", false, "accept experiments without stop conditions")
	cmd.Flags().StringVar(&agentImage, "agent-image", "", "the agent `image` run will be given with --agent-image")
	cmd.Flags().BoolVar(&allowRemote, "allow-remote", false, "accept targets, traffic and probes off loopback")
	return cmd
}

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of experiment files, for editors",
		Long: `Print the JSON Schema of experiment files. Editors with a YAML language
server complete and check experiment files with it: save it and add
  # yaml-language-server: $schema=./faultline-experiment.schema.json
at the top of a file. 'faultline validate' checks more than the schema can
(references, timing, conditions), with positions.`,
		Example: "  faultline schema > faultline-experiment.schema.json",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := experiment.Schema()
			if err != nil {
				return failure(err)
			}
			_, err = c.OutOrStdout().Write(b)
			return err
		},
	}
}
