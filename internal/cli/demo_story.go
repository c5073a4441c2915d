package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/faultline/faultline/examples/experiments"
	"github.com/faultline/faultline/record"
)

// demoStory is what an experiment of the demo teaches, nil when it has no
// story.
func demoStory(name string) *record.Story {
	st, ok := experiments.Stories[name]
	if !ok {
		return nil
	}
	return &st
}

// printDemoStories tells, after the table, what each experiment that ran
// found in the fragile build and what fixed it in the resilient one.
func printDemoStories(w io.Writer, sum *demoSummary) {
	var seen []string
	for _, r := range sum.Runs {
		st := demoStory(r.Experiment)
		if st == nil || slices.Contains(seen, r.Experiment) {
			continue
		}
		if len(seen) == 0 {
			fmt.Fprintln(w, "\nWhat each experiment found, and what fixed it:")
		}
		seen = append(seen, r.Experiment)
		fmt.Fprintf(w, "\n%s\n  weakness (fragile):  %s%s\n  fix (resilient):     %s%s\n",
			r.Experiment, st.Weakness, textAt(st.WeaknessAt), st.Fix, textAt(st.FixAt))
	}
}

func textAt(at []string) string {
	if len(at) == 0 {
		return ""
	}
	return " [" + strings.Join(at, ", ") + "]"
}

// checklistRow is one item of the quarterly checklist as this demo saw it.
type checklistRow struct {
	experiments.Item
	Fragile, Resilient string // verdicts; empty when not run
	NotRun             string // why not, when it did not run
	Expected           bool
}

// demoChecklist walks the quarterly checklist against the demo's runs.
func demoChecklist(sum *demoSummary) []checklistRow {
	rows := make([]checklistRow, 0, len(experiments.Quarterly))
	for _, it := range experiments.Quarterly {
		row := checklistRow{Item: it}
		var fragile, resilient *demoRow
		for i := range sum.Runs {
			r := &sum.Runs[i]
			if r.Experiment != it.Experiment {
				continue
			}
			if r.Build == "fragile" {
				fragile = r
			} else {
				resilient = r
			}
		}
		switch {
		case it.Planned != "":
			row.NotRun = "not covered yet: " + it.Planned
		case fragile != nil && resilient != nil:
			row.Fragile, row.Resilient = fragile.Verdict, resilient.Verdict
			row.Expected = fragile.Expected && resilient.Expected
		default:
			row.NotRun = "not run"
			for _, s := range sum.Skipped {
				if s.Experiment == it.Experiment {
					row.NotRun = "not run: " + s.Reason
				}
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// checklistTotals counts the items covered by an experiment that ran on
// both builds, and those of them whose verdicts were as expected.
func checklistTotals(rows []checklistRow) (covered, expected int) {
	for _, r := range rows {
		if r.NotRun == "" {
			covered++
			if r.Expected {
				expected++
			}
		}
	}
	return covered, expected
}

// printChecklist prints the quarterly checklist as a terminal table: each
// failure in its group, the experiment that covers it, both builds'
// verdicts, or why it did not run.
func printChecklist(w io.Writer, sum *demoSummary) {
	rows := demoChecklist(sum)
	covered, expected := checklistTotals(rows)
	fmt.Fprintf(w, "\nThe quarterly checklist: %d of %d failures covered on this machine, %d with both verdicts as expected\n\n",
		covered, len(rows), expected)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tFAILURE\tEXPERIMENT\tFRAGILE\tRESILIENT")
	group := ""
	for _, r := range rows {
		g := r.Group
		if g == group {
			g = ""
		}
		group = r.Group
		if r.NotRun != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g, r.Failure, r.Experiment, r.NotRun) // the last cell: it widens no column
			continue
		}
		mark := ""
		if !r.Expected {
			mark = " (!)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s%s\n", g, r.Failure, r.Experiment, r.Fragile, r.Resilient, mark)
	}
	_ = tw.Flush()
}

// writeDemoMarkdown writes DIR/summary.md: the runs' table, what each
// experiment found and what fixed it, and the checklist when it was asked
// for.
func writeDemoMarkdown(path string, sum *demoSummary, checklist bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# faultline demo: %d runs\n\nDatabase %s; cache %s.\n\n", len(sum.Runs), mdCell(sum.Database), mdCell(sum.Cache))
	b.WriteString("| experiment | build | verdict | p99 (fault) | errors (fault) | recovered in | finding |\n|---|---|---|---|---|---|---|\n")
	for _, r := range sum.Runs {
		p99, errs, ttr := "-", "-", "never"
		if r.P99 != nil {
			p99 = record.FormatValue(*r.P99, "s")
		}
		if r.ErrorRate != nil {
			errs = record.FormatValue(*r.ErrorRate, "ratio")
		}
		if r.TimeToRecover != nil {
			ttr = fmt.Sprintf("%.1f s", *r.TimeToRecover)
		}
		verdict := r.Verdict
		if !r.Expected {
			verdict += " (not as expected)"
		}
		report := filepath.ToSlash(filepath.Join(r.Experiment, r.Build, "report.html"))
		fmt.Fprintf(&b, "| %s | %s | [%s](%s) | %s | %s | %s | %s |\n", r.Experiment, r.Build, verdict, report, p99, errs, ttr, mdCell(r.Finding))
	}
	for _, s := range sum.Skipped {
		fmt.Fprintf(&b, "\nSkipped **%s**: %s\n", s.Experiment, mdCell(s.Reason))
	}
	var seen []string
	for _, r := range sum.Runs {
		st := demoStory(r.Experiment)
		if st == nil || slices.Contains(seen, r.Experiment) {
			continue
		}
		if len(seen) == 0 {
			b.WriteString("\n## What each experiment found, and what fixed it\n")
		}
		seen = append(seen, r.Experiment)
		fmt.Fprintf(&b, "\n### %s\n\n- **Weakness** (fragile build): %s%s\n- **Fix** (resilient build): %s%s\n",
			r.Experiment, st.Weakness, mdCode(st.WeaknessAt), st.Fix, mdCode(st.FixAt))
	}
	if checklist {
		rows := demoChecklist(sum)
		covered, expected := checklistTotals(rows)
		fmt.Fprintf(&b, "\n## The quarterly checklist\n\n%d of %d failures covered on this machine, %d with both verdicts as expected.\n\n",
			covered, len(rows), expected)
		b.WriteString("| group | failure | experiment | fragile | resilient |\n|---|---|---|---|---|\n")
		for _, r := range rows {
			if r.NotRun != "" {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | |\n", r.Group, r.Failure, r.Experiment, mdCell(r.NotRun))
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Group, r.Failure, r.Experiment, r.Fragile, r.Resilient)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func mdCell(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) }

func mdCode(at []string) string {
	if len(at) == 0 {
		return ""
	}
	return " (`" + strings.Join(at, "`, `") + "`)"
}
