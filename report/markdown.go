package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/faultline/faultline/record"
)

var verdictEmoji = map[string]string{record.Passed: "✅", record.Failed: "❌", record.Aborted: "🛑", record.Error: "⚠️", Incomplete: "⚠️"}

// mdEscape keeps a value from breaking a Markdown table.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// Markdown writes summary.md: the verdict, the hypothesis, why, a table of
// checks and the faults, for a pull-request comment or
// $GITHUB_STEP_SUMMARY. link is the HTML report's address ("" for none).
func (r *Run) Markdown(w io.Writer, link string) error {
	res := r.Result
	var b strings.Builder
	fmt.Fprintf(&b, "## %s %s: `%s`\n\n", verdictEmoji[res.Verdict], res.Verdict, res.Name)
	fmt.Fprintf(&b, "%s\n\n", headline(res.Verdict))
	if res.Hypothesis != "" {
		fmt.Fprintf(&b, "> **Hypothesis:** %s\n\n", strings.TrimSpace(res.Hypothesis))
	}
	if st := res.Story; st != nil {
		fmt.Fprintf(&b, "**The weakness:** %s%s\n\n**The fix:** %s%s\n\n", st.Weakness, mdAt(st.WeaknessAt), st.Fix, mdAt(st.FixAt))
	}
	for _, reason := range res.Reasons {
		fmt.Fprintf(&b, "- **Why:** %s\n", reason)
	}
	for _, blind := range r.Blind() {
		fmt.Fprintf(&b, "- **Not evaluated:** %s\n", mdEscape(blind))
	}
	if len(res.Reasons)+len(r.Blind()) > 0 {
		b.WriteString("\n")
	}
	if len(res.Checks) > 0 {
		b.WriteString("| phase | check | measured | limit | result |\n|---|---|---|---|---|\n")
		for _, c := range res.Checks {
			measured, limit := c.Detail, ""
			if c.Value != nil {
				measured = record.FormatValue(*c.Value, c.Unit)
			}
			if c.Threshold != nil {
				limit = record.FormatValue(*c.Threshold, c.Unit)
			}
			state, cond := "✅ held", "`"+c.Condition+"`"
			switch {
			case c.Fired:
				state, cond = "🛑 stop fired", "stop when `"+c.Condition+"`"
			case !c.Held:
				state = "❌ broken"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", c.Phase, mdEscape(cond), mdEscape(measured), limit, state)
		}
		b.WriteString("\n")
	}
	for _, f := range r.faultRows() {
		what := ""
		if f.Action != "" {
			what = fmt.Sprintf(" (`%s` on %s)", f.Action, f.Target)
		}
		fmt.Fprintf(&b, "- Fault **%s**%s: injected %s, reverted %s", mdEscape(f.Name), what, f.Injected, f.Reverted)
		if len(f.Hit) > 0 {
			fmt.Fprintf(&b, "; hit %s", mdEscape(strings.Join(f.Hit, "; ")))
		}
		b.WriteString("\n")
	}
	ttr := "not recovered"
	if res.TimeToRecover != nil {
		ttr = fmt.Sprintf("%.1f s", *res.TimeToRecover)
	}
	fmt.Fprintf(&b, "\nTime to recover: %s · duration %.1f s · seed %d", ttr, r.duration(), res.Seed)
	if link != "" {
		fmt.Fprintf(&b, " · [full report](%s)", link)
	}
	fmt.Fprintf(&b, "\n\nReplay: `%s`\n", r.Replay())
	_, err := io.WriteString(w, b.String())
	return err
}

// mdAt names the places in the code a story points at.
func mdAt(at []string) string {
	if len(at) == 0 {
		return ""
	}
	return " (`" + strings.Join(at, "`, `") + "`)"
}
