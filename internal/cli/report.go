package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/report"
)

func newReportCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Render a run's reports again: report.html, junit.xml, summary.md",
		Long: `Renders a run directory's reports from what the run left there (journal.jsonl,
samples.jsonl, result.json), never from the experiment file or a live target: an
older run, or one copied from CI, renders the same anywhere.

Without --format it rewrites report.html (self-contained: open it offline, attach it
as a CI artifact), junit.xml (one test case per check per phase) and summary.md
(for a pull-request comment or $GITHUB_STEP_SUMMARY) in RUN_DIR. With --format it
writes that one to stdout. A run whose runner was killed renders from its journal,
marked INCOMPLETE.`,
		Example: `  faultline report faultline-runs/slow-payment-20261127T091443Z
  faultline report runs/today --format md >> "$GITHUB_STEP_SUMMARY"
  faultline report runs/today --format junit > junit.xml`,
		Args: exactArgs("RUN_DIR"),
		RunE: func(c *cobra.Command, args []string) error {
			r, err := report.Load(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			report.Version = version()
			w := c.OutOrStdout()
			switch format {
			case "":
				if err := r.WriteAll(); err != nil {
					return failure(err)
				}
				for _, f := range []string{"report.html", "junit.xml", "summary.md"} {
					fmt.Fprintln(w, filepath.Join(args[0], f))
				}
				return nil
			case "html":
				return failure(r.HTML(w))
			case "md", "markdown":
				return failure(r.Markdown(w, "report.html"))
			case "junit":
				return failure(r.JUnit(w))
			case "json":
				return failure(writeFileTo(w, filepath.Join(args[0], "result.json")))
			}
			return usagef("--format %q: want html, md, junit or json", format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "write only this one to stdout: `html`, md, junit or json")
	return cmd
}

func writeFileTo(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func newCompareCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B",
		Short: "Put two runs of an experiment side by side: before and after a fix",
		Long: `Writes compare.html: both verdicts, each check's value in each run, and the
timelines of both runs overlaid, aligned on the start of injection. Use it for the
same experiment before and after a fix, or against two builds.`,
		Example: `  faultline compare runs/before runs/after
  faultline compare demo/slow-payment/fragile demo/slow-payment/resilient -o slow-payment.html`,
		Args: exactArgs("RUN_A", "RUN_B"),
		RunE: func(c *cobra.Command, args []string) error {
			a, err := report.Load(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			b, err := report.Load(args[1])
			if err != nil {
				return usagef("%v", err)
			}
			for _, w := range report.CompareWarnings(a, b) {
				fmt.Fprintf(c.ErrOrStderr(), "warning: %s\n", w)
			}
			report.Version = version()
			if err := writeCompare(out, a, b); err != nil {
				return failure(err)
			}
			fmt.Fprintln(c.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "compare.html", "`file` to write")
	return cmd
}

func writeCompare(path string, a, b *report.Run) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = report.Compare(f, a, b, filepath.Dir(path))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
