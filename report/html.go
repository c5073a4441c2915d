package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/faultline/faultline/record"
)

//go:embed style.css
var styleCSS string

// Version is printed in the reports' footers; the CLI sets it.
var Version = "dev"

// checkRow is one condition across the phases.
type checkRow struct {
	Condition string
	Stop      bool
	Cells     []checkCell // one per phase of checkPhases
}

type checkCell struct {
	Present bool
	Held    bool
	Fired   bool
	Text    string // measured value (limit)
	Detail  string
}

// State is the cell's class and mark: fired, held or broken.
func (c checkCell) State() string {
	switch {
	case c.Fired:
		return "fired"
	case c.Held:
		return "held"
	}
	return "broken"
}

// cellHTML is one check's cell in the report and the comparison.
const cellHTML = `{{define "cell"}}{{if .Present}}<td class="{{.State}}" title="{{.Detail}}"><span class="mark">{{.State}}</span> {{.Text}}</td>{{else}}<td class="na">–</td>{{end}}{{end}}`

var checkPhases = []string{"baseline", "inject", "recovery"}

func cellText(c record.CheckRecord) string {
	if c.Value == nil {
		return c.Detail
	}
	s := record.FormatValue(*c.Value, c.Unit)
	if c.Threshold != nil {
		s += " (limit " + record.FormatValue(*c.Threshold, c.Unit) + ")"
	}
	return s
}

// checkRows groups the checks by condition, in the order first seen.
func (r *Run) checkRows() []checkRow {
	var rows []checkRow
	index := map[string]int{}
	for _, c := range r.Result.Checks {
		key := c.Condition
		if c.Fired {
			key = "stop: " + key
		}
		i, ok := index[key]
		if !ok {
			i = len(rows)
			index[key] = i
			rows = append(rows, checkRow{Condition: c.Condition, Stop: c.Fired, Cells: make([]checkCell, len(checkPhases))})
		}
		if p := slices.Index(checkPhases, c.Phase); p >= 0 {
			rows[i].Cells[p] = checkCell{Present: true, Held: c.Held && !c.Fired, Fired: c.Fired, Text: cellText(c), Detail: c.Detail}
		}
	}
	return rows
}

// faultRow is one fault for the report.
type faultRow struct {
	record.FaultRecord
	Injected, Reverted string
}

func (r *Run) faultRows() []faultRow {
	var out []faultRow
	for _, f := range r.Result.Faults {
		row := faultRow{FaultRecord: f, Injected: "not injected", Reverted: "-"}
		if f.InjectedAt != nil {
			row.Injected = fmt.Sprintf("+%.1f s", r.since(*f.InjectedAt))
		}
		if f.RevertedAt != nil {
			row.Reverted = fmt.Sprintf("+%.1f s", r.since(*f.RevertedAt))
		} else if f.InjectedAt != nil {
			row.Reverted = "not reverted"
		}
		out = append(out, row)
	}
	return out
}

// bands are the run's phases and faults, in seconds since the start.
func (r *Run) bands(shift float64) []band {
	var out []band
	for _, p := range r.Result.Phases {
		switch p.Name {
		case "baseline", "rollback", "recovery":
			out = append(out, band{from: r.since(p.Start) - shift, to: r.since(p.End) - shift, label: p.Name, kind: p.Name})
		}
	}
	_, injectEnd, _ := r.phase("inject")
	for _, f := range r.Result.Faults {
		if f.InjectedAt == nil {
			continue
		}
		to := injectEnd
		if f.RevertedAt != nil {
			to = r.since(*f.RevertedAt)
		}
		out = append(out, band{from: r.since(*f.InjectedAt) - shift, to: to - shift, label: f.Name, kind: "fault"})
	}
	return out
}

// markers mark the stop condition that fired, at the end of injection.
func (r *Run) markers(shift float64) []marker {
	var out []marker
	_, injectEnd, ok := r.phase("inject")
	for _, c := range r.Result.Checks {
		if c.Fired && ok {
			out = append(out, marker{at: injectEnd - shift, label: "stop: " + c.Condition})
		}
	}
	return out
}

// metric picks one value of a sample.
type metric struct {
	name  string
	color string
	value func(record.Sample) float64
}

var (
	rateMetrics = []metric{
		{"requests/s", blue, func(s record.Sample) float64 { return float64(s.Requests) }},
		{"errors/s", vermilion, func(s record.Sample) float64 { return float64(s.Errors) }},
	}
	errorMetrics   = []metric{{"error rate", vermilion, func(s record.Sample) float64 { return s.ErrorRate }}}
	latencyMetrics = []metric{
		{"p50", blue, func(s record.Sample) float64 { return s.P50 }},
		{"p95", orange, func(s record.Sample) float64 { return s.P95 }},
		{"p99", vermilion, func(s record.Sample) float64 { return s.P99 }},
	}
)

// points are a metric's values, x in seconds since the start minus shift.
func (r *Run) points(m metric, shift float64) []point {
	var out []point
	for _, s := range r.Samples {
		out = append(out, point{r.since(s.Time) - shift, m.value(s)})
	}
	return out
}

// timelines are the report's three charts.
func (r *Run) timelines() []template.HTML {
	mk := func(id, title, unit string, ms []metric, f func(float64) string, atLeast float64) template.HTML {
		c := chart{id: id, title: title, unit: unit, xLabel: "seconds since the run started", xMin: 0, xMax: r.duration(),
			bands: r.bands(0), markers: r.markers(0), yFormat: f, yMaxAtLeast: atLeast}
		if id == "errors" {
			c.yCap = 1 // a rate: never above 100 %
		}
		for _, m := range ms {
			c.series = append(c.series, series{name: m.name, color: m.color, pts: r.points(m, 0)})
		}
		return template.HTML(c.svg()) //nolint:gosec // built by chart.svg, which escapes every text
	}
	if len(r.Samples) == 0 {
		return nil
	}
	var out []template.HTML
	if r.hasTraffic() {
		out = append(out,
			mk("rate", "Requests per second", "per second", rateMetrics, fmtRate, 1),
			mk("errors", "Error rate", "errors", errorMetrics, fmtPercent, 0.01),
			r.latencyChart())
	}
	return append(out, r.probeCharts()...)
}

// hasTraffic reports whether the run had traffic of its own.
func (r *Run) hasTraffic() bool {
	if len(r.Result.Traffic) > 0 {
		return true
	}
	for _, s := range r.Samples {
		if s.Requests > 0 || s.InFlight > 0 {
			return true
		}
	}
	return len(r.probeNames()) == 0 && len(r.stopNames()) == 0 // nothing else to draw: the empty charts say so
}

func (r *Run) newChart(id, title, unit string, f func(float64) string, atLeast float64) chart {
	return chart{id: id, title: title, unit: unit, xLabel: "seconds since the run started", xMin: 0, xMax: r.duration(),
		bands: r.bands(0), markers: r.markers(0), yFormat: f, yMaxAtLeast: atLeast}
}

// latencyChart draws the percentiles, the age of the oldest request in
// flight (a hang, as it hangs) and the client timeout, where latencies
// that reach it are requests given up.
func (r *Run) latencyChart() template.HTML {
	c := r.newChart("latency", "Latency (from each request's intended start)", "latency", fmtMillis, 0.001)
	for _, m := range latencyMetrics {
		c.series = append(c.series, series{name: m.name, color: m.color, pts: r.points(m, 0)})
	}
	oldest := metric{"oldest in flight", purple, func(s record.Sample) float64 { return s.Oldest }}
	for _, s := range r.Samples {
		if s.InFlight > 0 && s.Oldest > 0 {
			c.series = append(c.series, series{name: oldest.name, color: oldest.color, dash: true, pts: r.points(oldest, 0)})
			break
		}
	}
	if t := r.Result.Timeout; t > 0 {
		c.series = append(c.series, series{name: "client timeout " + fmtMillis(t), color: grey, dash: true,
			pts: []point{{c.xMin, t}, {c.xMax, t}}})
	}
	return template.HTML(c.svg()) //nolint:gosec // built by chart.svg, which escapes every text
}

// probeNames lists the probes of the samples, in order of first appearance.
func (r *Run) probeNames() []string {
	var out []string
	for _, s := range r.Samples {
		for _, p := range s.Probes {
			if !slices.Contains(out, p.Probe) {
				out = append(out, p.Probe)
			}
		}
	}
	return out
}

// stopNames lists the stop conditions on a Prometheus that had a value.
func (r *Run) stopNames() []string {
	var out []string
	for _, s := range r.Samples {
		for _, st := range s.Stops {
			if st.Value != nil && !slices.Contains(out, st.Condition) {
				out = append(out, st.Condition)
			}
		}
	}
	return out
}

// Blind says, for each stop condition on Prometheus that could not be
// evaluated in some ticks (an error, a timeout, no sample), in how many
// and the last error: a run can pass with its safety net blind for a while,
// and the reader should know.
func (r *Run) Blind() []string {
	type gap struct {
		n, of int
		last  string
	}
	var order []string
	gaps := map[string]*gap{}
	for _, s := range r.Samples {
		for _, st := range s.Stops {
			g := gaps[st.Condition]
			if g == nil {
				g = &gap{}
				gaps[st.Condition] = g
				order = append(order, st.Condition)
			}
			g.of++
			if st.Error != "" {
				g.n++
				g.last = st.Error
			}
		}
	}
	var out []string
	for _, c := range order {
		if g := gaps[c]; g.n > 0 {
			out = append(out, fmt.Sprintf("%s could not be evaluated in %d of %d ticks (last: %s)", c, g.n, g.of, g.last))
		}
	}
	return out
}

// stopPoints are the values a stop condition on Prometheus read, in each
// tick where it read one, x in seconds since the start minus shift.
func (r *Run) stopPoints(name string, shift float64) []point {
	var pts []point
	for _, s := range r.Samples {
		for _, st := range s.Stops {
			if st.Condition == name && st.Value != nil {
				pts = append(pts, point{r.since(s.Time) - shift, *st.Value})
			}
		}
	}
	return pts
}

// probePoints are a probe's share passed and mean time to answer, in each
// tick where it ran.
func (r *Run) probePoints(name string, shift float64) (pass, took []point) {
	for _, s := range r.Samples {
		n, passed, sum := 0, 0, 0.0
		for _, p := range s.Probes {
			if p.Probe == name {
				n++
				sum += p.Latency
				if p.Passed {
					passed++
				}
			}
		}
		if n > 0 {
			x := r.since(s.Time) - shift
			pass, took = append(pass, point{x, float64(passed) / float64(n)}), append(took, point{x, sum / float64(n)})
		}
	}
	return pass, took
}

var seriesColors = []string{blue, orange, green, purple, sky, vermilion}

// probeCharts draw each probe's success and latency, tick by tick, and the
// value of each query a stop condition reads, with the same windows as the
// traffic.
func (r *Run) probeCharts() []template.HTML {
	var out []template.HTML
	if names := r.probeNames(); len(names) > 0 {
		ok := r.newChart("probe-success", "Probes: share passed in each tick", "passed", fmtPercent, 1)
		ok.yCap = 1
		lat := r.newChart("probe-latency", "Probes: time to answer", "latency", fmtMillis, 0.001)
		for i, name := range names {
			pass, took := r.probePoints(name, 0)
			color := seriesColors[i%len(seriesColors)]
			ok.series = append(ok.series, series{name: name, color: color, pts: pass})
			lat.series = append(lat.series, series{name: name, color: color, pts: took})
		}
		out = append(out, template.HTML(ok.svg()), template.HTML(lat.svg())) //nolint:gosec // built by chart.svg, which escapes every text
	}
	if names := r.stopNames(); len(names) > 0 {
		q := r.newChart("queries", "Stop conditions on Prometheus: the value read each tick (an alert: 1 while firing)", "value", trimFloat, 0)
		for i, name := range names {
			q.series = append(q.series, series{name: name, color: seriesColors[i%len(seriesColors)], pts: r.stopPoints(name, 0)})
		}
		out = append(out, template.HTML(q.svg())) //nolint:gosec // built by chart.svg, which escapes every text
	}
	return out
}

// verdictClass is the CSS class of a verdict.
func verdictClass(v string) string { return strings.ToLower(v) }

// headline says the verdict in words.
func headline(v string) string {
	switch v {
	case record.Passed:
		return "The hypothesis held."
	case record.Failed:
		return "The hypothesis did not hold: the experiment found a weakness."
	case record.Aborted:
		return "The run was stopped before its end, and every fault was reverted."
	case record.Error:
		return "The experiment could not be carried out."
	}
	return "The run did not finish."
}

type htmlData struct {
	R            *Run
	Res          record.Result
	Class        string
	Headline     string
	Phases       []string
	Rows         []checkRow
	Faults       []faultRow
	Charts       []template.HTML
	Duration     string
	Started      string
	TTR          string
	Traffic      []record.TrafficRecord
	Replay       string
	Version      string
	Style        template.CSS
	HasRecovered bool
}

func (r *Run) htmlData() htmlData {
	d := htmlData{R: r, Res: r.Result, Class: verdictClass(r.Result.Verdict), Headline: headline(r.Result.Verdict),
		Phases: checkPhases, Rows: r.checkRows(), Faults: r.faultRows(), Charts: r.timelines(),
		Duration: fmt.Sprintf("%.1f s", r.duration()), Started: time.Time(r.Result.Started).UTC().Format("2006-01-02 15:04:05 MST"),
		Replay: r.Replay(), Version: Version, Style: template.CSS(styleCSS)} //nolint:gosec // our own stylesheet
	d.TTR = "did not recover within the recovery window"
	if r.Result.TimeToRecover != nil {
		d.TTR = fmt.Sprintf("%.1f s after the rollback", *r.Result.TimeToRecover)
	} else if _, _, ok := r.phase("recovery"); !ok {
		d.TTR = "not measured (no recovery phase)"
	}
	for _, t := range r.Result.Traffic {
		if t.Request == "" && slices.Contains(checkPhases, t.Phase) {
			d.Traffic = append(d.Traffic, t)
		}
	}
	return d
}

var funcs = template.FuncMap{
	"pct":  func(v float64) string { return record.FormatValue(v, "ratio") },
	"dur":  func(v float64) string { return record.FormatValue(v, "s") },
	"rate": func(v float64) string { return fmt.Sprintf("%.1f/s", v) },
	"join": strings.Join,
}

var reportTmpl = template.Must(template.Must(template.Must(template.New("report").Funcs(funcs).Parse(reportHTML)).Parse(cellHTML)).Parse(atHTML))

// atHTML names the places in the code a story points at.
const atHTML = `{{define "at"}}{{if .}} <span class="at">({{range $i, $a := .}}{{if $i}}, {{end}}<code>{{$a}}</code>{{end}})</span>{{end}}{{end}}`

// HTML writes the self-contained HTML report.
func (r *Run) HTML(w io.Writer) error { return reportTmpl.Execute(w, r.htmlData()) }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

const reportHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Res.Verdict}} · {{.Res.Name}} · faultline</title>
<style>{{.Style}}</style>
</head>
<body>
<header class="verdict {{.Class}}">
  <div class="badge" id="verdict">{{.Res.Verdict}}</div>
  <div>
    <h1>{{.Res.Name}}</h1>
    <p class="headline">{{.Headline}}</p>
  </div>
</header>
<main>
{{with .Res.Hypothesis}}<section class="hypothesis"><h2>Hypothesis</h2><p>{{.}}</p></section>{{end}}
{{with .Res.Story}}<section class="story"><h2>What it teaches</h2>
<p><b>The weakness.</b> {{.Weakness}}{{template "at" .WeaknessAt}}</p>
<p><b>The fix.</b> {{.Fix}}{{template "at" .FixAt}}</p></section>{{end}}
{{if .Res.Reasons}}<section class="why"><h2>Why</h2><ul>{{range .Res.Reasons}}<li>{{.}}</li>{{end}}</ul></section>{{end}}
<section class="facts">
  <div><span>started</span>{{.Started}}</div>
  <div><span>duration</span>{{.Duration}}</div>
  <div><span>time to recover</span>{{.TTR}}</div>
  <div><span>seed</span>{{.Res.Seed}}</div>
</section>

<section>
<h2>Steady state, phase by phase</h2>
{{if .Rows}}
<table class="checks">
<thead><tr><th>condition</th>{{range .Phases}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr{{if .Stop}} class="stop"{{end}}><td class="cond">{{if .Stop}}<span class="tag">stop</span>{{end}}<code>{{.Condition}}</code></td>
{{range .Cells}}{{template "cell" .}}{{end}}</tr>
{{end}}</tbody>
</table>
{{else}}<p class="muted">No check was evaluated.</p>{{end}}
</section>

{{with .R.Blind}}<section class="why"><h2>Stop conditions not evaluated</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul></section>

{{end}}{{if .Charts}}<section class="timelines">
<h2>Timelines</h2>
<p class="legend-note"><span class="sw baseline"></span>baseline <span class="sw fault"></span>fault <span class="sw rollback"></span>rollback <span class="sw recovery"></span>recovery · each point is one second of traffic</p>
{{range .Charts}}{{.}}{{end}}
</section>{{end}}

{{if .Traffic}}<section>
<h2>Traffic by phase</h2>
<table class="traffic"><thead><tr><th>phase</th><th>requests</th><th>errors</th><th>error rate</th><th>throughput</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr></thead>
<tbody>{{range .Traffic}}<tr><td>{{.Phase}}</td><td>{{.Requests}}</td><td>{{.Errors}}</td><td>{{pct .ErrorRate}}</td><td>{{rate .Throughput}}</td><td>{{dur .P50}}</td><td>{{dur .P95}}</td><td>{{dur .P99}}</td><td>{{dur .Max}}</td></tr>{{end}}</tbody></table>
<p class="legend-note">Each phase whole. The recovery checks above measure the window in which the steady state first held again, so they can differ from the recovery row.</p>
</section>{{end}}

<section>
<h2>Faults</h2>
{{if .Faults}}<table class="faults"><thead><tr><th>fault</th><th>action</th><th>target</th><th>injected</th><th>reverted</th><th>hit</th><th>evidence</th></tr></thead>
<tbody>{{range .Faults}}<tr><td>{{.Name}}</td><td>{{with .Action}}<code>{{.}}</code>{{else}}–{{end}}</td><td>{{or .Target "the machine"}}</td><td>{{.Injected}}</td><td>{{.Reverted}}</td><td>{{join .Hit "; "}}</td><td>{{join .Evidence "; "}}{{with .Error}}<div class="err">{{.}}</div>{{end}}</td></tr>{{end}}</tbody></table>
{{else}}<p class="muted">No fault was set up.</p>{{end}}
</section>

<section class="replay">
<h2>Replay</h2>
<pre><code>{{.Replay}}</code></pre>
</section>
</main>
<footer>faultline {{.Version}} · {{.Res.File}} · run directory {{.R.Dir}}</footer>
</body>
</html>
`
