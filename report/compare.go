package report

import (
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/faultline/faultline/record"
)

// compareRow is one condition in one phase, in both runs.
type compareRow struct {
	Condition, Phase string
	A, B             checkCell
}

type compareSide struct {
	R        *Run
	Link     string // to its report.html, relative to compare.html
	Label    string
	Class    string
	Headline string
	TTR      string
}

type compareData struct {
	A, B     compareSide
	Rows     []compareRow
	Faults   []compareFault
	Warnings []string
	Charts   []template.HTML
	Style    template.CSS
	Version  string
}

// compareFault is one fault, by name, as each run had it.
type compareFault struct {
	Name, A, B string
	Differ     bool
}

// CompareWarnings says how two runs differ in what they tested: the
// experiment, the hypothesis, the faults. A comparison of a fix is only
// fair when the faults were the same.
func CompareWarnings(a, b *Run) []string {
	var out []string
	ra, rb := a.Result, b.Result
	if ra.Name != rb.Name {
		out = append(out, fmt.Sprintf("these are runs of two experiments (%q and %q): only the checks they share line up", ra.Name, rb.Name))
	}
	if ra.Hypothesis != rb.Hypothesis {
		out = append(out, "the two runs have different hypotheses")
	}
	for _, f := range compareFaults(a, b) {
		if f.Differ {
			out = append(out, fmt.Sprintf("fault %q differs: %s in %s, %s in %s", f.Name, orNone(f.A), label(a), orNone(f.B), label(b)))
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// compareFaults pairs the two runs' faults by name, in A's order then B's.
func compareFaults(a, b *Run) []compareFault {
	var out []compareFault
	idx := map[string]int{}
	for _, f := range a.Result.Faults {
		idx[f.Name] = len(out)
		out = append(out, compareFault{Name: f.Name, A: faultSettings(f)})
	}
	for _, f := range b.Result.Faults {
		i, ok := idx[f.Name]
		if !ok {
			i = len(out)
			out = append(out, compareFault{Name: f.Name})
		}
		out[i].B = faultSettings(f)
	}
	for i := range out {
		out[i].Differ = out[i].A != out[i].B
	}
	return out
}

// faultSettings is a fault's settings, or its action for a run recorded
// before settings were.
func faultSettings(f record.FaultRecord) string {
	if f.Settings != "" {
		return f.Settings
	}
	return f.Action + " on " + f.Target
}

// label names a run in a comparison: its directory's name.
func label(r *Run) string { return filepath.Base(filepath.Clean(r.Dir)) }

func side(r *Run) compareSide {
	s := compareSide{R: r, Label: label(r), Class: verdictClass(r.Result.Verdict), Headline: headline(r.Result.Verdict), TTR: "not recovered"}
	if r.Result.TimeToRecover != nil {
		s.TTR = fmt.Sprintf("recovered %.1f s after the rollback", *r.Result.TimeToRecover)
	}
	return s
}

// injectStart is where the comparison's timelines are aligned.
func (r *Run) injectStart() float64 {
	from, _, _ := r.phase("inject")
	return from
}

// Compare writes compare.html: two runs of an experiment (before and after
// a fix, fragile and resilient) side by side, their timelines overlaid and
// aligned on the start of injection. outDir is where compare.html goes,
// for the links to each run's report.
func Compare(w io.Writer, a, b *Run, outDir string) error {
	d := compareData{A: side(a), B: side(b), Style: template.CSS(styleCSS), Version: Version, //nolint:gosec // our own stylesheet
		Faults: compareFaults(a, b), Warnings: CompareWarnings(a, b)}
	for _, s := range []*compareSide{&d.A, &d.B} {
		s.Link = filepath.Join(s.R.Dir, "report.html")
		if abs, err := filepath.Abs(s.Link); err == nil {
			if base, err := filepath.Abs(outDir); err == nil {
				if rel, err := filepath.Rel(base, abs); err == nil {
					s.Link = rel
				}
			}
		}
	}
	if d.A.Label == d.B.Label {
		d.A.Label, d.B.Label = "A: "+d.A.Label, "B: "+d.B.Label
	}
	type key struct{ cond, phase string }
	var order []key
	cells := map[key]*compareRow{}
	add := func(r *Run, which int) {
		for _, c := range r.Result.Checks {
			k := key{c.Condition, c.Phase}
			if c.Fired {
				k.cond = "stop when " + c.Condition
			}
			row := cells[k]
			if row == nil {
				row = &compareRow{Condition: k.cond, Phase: c.Phase}
				cells[k] = row
				order = append(order, k)
			}
			cell := checkCell{Present: true, Held: c.Held && !c.Fired, Fired: c.Fired, Text: cellText(c), Detail: c.Detail}
			if which == 0 {
				row.A = cell
			} else {
				row.B = cell
			}
		}
	}
	add(a, 0)
	add(b, 1)
	slices.SortStableFunc(order, func(x, y key) int { return slices.Index(checkPhases, x.phase) - slices.Index(checkPhases, y.phase) })
	for _, k := range order {
		d.Rows = append(d.Rows, *cells[k])
	}
	if len(a.Samples)+len(b.Samples) > 0 {
		d.Charts = compareCharts(a, b, d.A.Label, d.B.Label)
	}
	return compareTmpl.Execute(w, d)
}

// compareCharts draw both runs on the same axes, x in seconds since each
// one's injection started: the traffic (when either had traffic of its
// own), each probe's share passed and time to answer, and each query a
// stop condition read.
func compareCharts(a, b *Run, labelA, labelB string) []template.HTML {
	sa, sb := a.injectStart(), b.injectStart()
	xMin := min(-sa, -sb)
	xMax := max(a.duration()-sa, b.duration()-sb)
	newChart := func(id, title, unit string, f func(float64) string, atLeast float64) chart {
		return chart{id: id, title: title, unit: unit, xLabel: "seconds since injection started", xMin: xMin, xMax: xMax,
			bands: a.bands(sa), markers: a.markers(sa), yFormat: f, yMaxAtLeast: atLeast}
	}
	both := func(c chart, ptsA, ptsB []point, what string) template.HTML {
		c.series = []series{
			{name: strings.TrimSpace(labelA + " " + what), color: vermilion, pts: ptsA},
			{name: strings.TrimSpace(labelB + " " + what), color: blue, dash: true, pts: ptsB},
		}
		return template.HTML(c.svg()) //nolint:gosec // built by chart.svg, which escapes every text
	}
	var out []template.HTML
	if a.hasTraffic() || b.hasTraffic() {
		traffic := func(id, title, unit string, m metric, f func(float64) string, atLeast float64) template.HTML {
			c := newChart(id, title, unit, f, atLeast)
			if id == "errors" {
				c.yCap = 1 // a rate: never above 100 %
			}
			return both(c, a.points(m, sa), b.points(m, sb), m.name)
		}
		out = append(out,
			traffic("errors", "Error rate", "errors", errorMetrics[0], fmtPercent, 0.01),
			traffic("latency", "Latency p99", "latency", latencyMetrics[2], fmtMillis, 0.001),
			traffic("rate", "Requests per second", "per second", rateMetrics[0], fmtRate, 1))
	}
	for i, name := range union(a.probeNames(), b.probeNames()) {
		passA, tookA := a.probePoints(name, sa)
		passB, tookB := b.probePoints(name, sb)
		ok := newChart(fmt.Sprintf("probe-%d", i), "Probe "+name+": share passed in each tick", "passed", fmtPercent, 1)
		ok.yCap = 1
		out = append(out, both(ok, passA, passB, ""),
			both(newChart(fmt.Sprintf("probe-latency-%d", i), "Probe "+name+": time to answer", "latency", fmtMillis, 0.001), tookA, tookB, ""))
	}
	for i, name := range union(a.stopNames(), b.stopNames()) {
		q := newChart(fmt.Sprintf("query-%d", i), "Stop condition "+name+": the value read each tick", "value", trimFloat, 0)
		out = append(out, both(q, a.stopPoints(name, sa), b.stopPoints(name, sb), ""))
	}
	return out
}

// union is a's names, then b's that a has not, in order.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, n := range b {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

var compareTmpl = template.Must(template.Must(template.New("compare").Funcs(funcs).Parse(compareHTML)).Parse(cellHTML))

const compareHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.A.R.Result.Name}}: {{.A.Label}} {{.A.R.Result.Verdict}} vs {{.B.Label}} {{.B.R.Result.Verdict}} · faultline</title>
<style>{{.Style}}</style>
</head>
<body>
<header class="verdict error"><div><h1>{{.A.R.Result.Name}}: {{.A.Label}} and {{.B.Label}} side by side</h1>
{{if eq .A.R.Result.Hypothesis .B.R.Result.Hypothesis}}{{with .A.R.Result.Hypothesis}}<p class="headline">{{.}}</p>{{end}}{{else}}<p class="headline">{{.A.Label}}: {{or .A.R.Result.Hypothesis "no hypothesis"}}</p>
<p class="headline">{{.B.Label}}: {{or .B.R.Result.Hypothesis "no hypothesis"}}</p>{{end}}</div></header>
<main>
{{if .Warnings}}<section class="warnings" id="warnings"><h2>Not like for like</h2><ul>{{range .Warnings}}<li>{{.}}</li>{{end}}</ul></section>{{end}}
<section class="compare-verdicts">
  <div class="v {{.A.Class}}" id="verdict-a"><strong>{{.A.Label}}: {{.A.R.Result.Verdict}}</strong><br>{{.A.Headline}}<br>{{.A.TTR}}</div>
  <div class="v {{.B.Class}}" id="verdict-b"><strong>{{.B.Label}}: {{.B.R.Result.Verdict}}</strong><br>{{.B.Headline}}<br>{{.B.TTR}}</div>
</section>
<section>
<h2>Checks</h2>
<table class="checks"><thead><tr><th>phase</th><th>condition</th><th>{{.A.Label}}</th><th>{{.B.Label}}</th></tr></thead>
<tbody>{{range .Rows}}<tr><td>{{.Phase}}</td><td class="cond"><code>{{.Condition}}</code></td>
{{template "cell" .A}}
{{template "cell" .B}}</tr>
{{end}}</tbody></table>
</section>
<section>
<h2>Faults</h2>
<table class="faults" id="faults"><thead><tr><th>fault</th><th>{{.A.Label}}</th><th>{{.B.Label}}</th></tr></thead>
<tbody>{{range .Faults}}<tr{{if .Differ}} class="differ"{{end}}><td>{{.Name}}</td><td><code>{{or .A "none"}}</code></td><td><code>{{or .B "none"}}</code></td></tr>
{{end}}</tbody></table>
</section>
{{if .Charts}}<section class="timelines"><h2>Timelines, overlaid</h2>
<p class="legend-note">{{.A.Label}} solid, {{.B.Label}} dashed; aligned on the start of injection; shaded windows are {{.A.Label}}'s</p>
{{range .Charts}}{{.}}{{end}}</section>{{end}}
<section><h2>Runs</h2><ul>
<li>{{.A.Label}}: <code>{{.A.R.Dir}}</code> (<a href="{{.A.Link}}">report</a>)</li>
<li>{{.B.Label}}: <code>{{.B.R.Dir}}</code> (<a href="{{.B.Link}}">report</a>)</li></ul></section>
</main>
<footer>faultline {{.Version}}</footer>
</body>
</html>
`
