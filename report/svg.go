package report

// The charts are SVG written here rather than with a plotting library:
// they are plain time series with shaded windows, and writing them directly
// keeps the text real text (selectable, styled by the page's CSS), the
// series addressable (data-series) for tests and readers, and the binary
// free of a plotting stack and its fonts.

import (
	"fmt"
	"html"
	"math"
	"strings"
)

type point struct{ x, y float64 }

// series is one line of a chart.
type series struct {
	name  string // shown in the legend, and data-series
	color string
	dash  bool
	pts   []point
}

// band is a shaded span of the x axis.
type band struct {
	from, to float64
	label    string
	kind     string // baseline, fault, rollback, recovery
}

// marker is a vertical line at one moment.
type marker struct {
	at    float64
	label string
}

// chart is one timeline panel.
type chart struct {
	id, title, unit string
	xLabel          string
	xMin, xMax      float64
	series          []series
	bands           []band
	markers         []marker
	yFormat         func(float64) string
	yMaxAtLeast     float64
	yCap            float64 // the axis never goes above it (1 for a ratio); 0: none
}

// Okabe-Ito colours: told apart with every common colour-vision deficiency.
const (
	blue      = "#0072B2"
	orange    = "#E69F00"
	vermilion = "#D55E00"
	green     = "#009E73"
	sky       = "#56B4E9"
	purple    = "#CC79A7"
	grey      = "#7f7f7f"
)

var bandFill = map[string]string{"baseline": sky, "fault": vermilion, "rollback": grey, "recovery": green}

const (
	chartW, chartH         = 960, 230
	padL, padR, padT, padB = 72, 16, 34, 40
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
	faultLane              = 14 // height of each fault's label lane
)

// niceStep is a round step (1, 2, 5 × 10^k) giving about n ticks over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func esc(s string) string { return html.EscapeString(s) }

// svg renders the chart.
func (c chart) svg() string {
	yMax := c.yMaxAtLeast
	for _, s := range c.series {
		for _, p := range s.pts {
			yMax = math.Max(yMax, p.y)
		}
	}
	if yMax <= 0 {
		yMax = 1
	}
	yStep := niceStep(yMax*1.08, 4)
	yMax = math.Ceil(yMax*1.08/yStep) * yStep
	if c.yCap > 0 && yMax > c.yCap {
		yMax, yStep = c.yCap, c.yCap/4
	}
	if c.xMax <= c.xMin {
		c.xMax = c.xMin + 1
	}
	lanes := 0
	for _, b := range c.bands {
		if b.kind == "fault" {
			lanes++
		}
	}
	top := float64(padT + lanes*faultLane)
	h := float64(plotH)
	height := chartH + lanes*faultLane
	x := func(v float64) float64 { return padL + (v-c.xMin)/(c.xMax-c.xMin)*plotW }
	y := func(v float64) float64 { return top + h - v/yMax*h }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, esc(c.id), chartW, height, esc(c.title))
	fmt.Fprintf(&b, `<text class="chart-title" x="%d" y="18">%s</text>`, padL, esc(c.title))
	// Legend, right-aligned in the title row.
	lx := float64(chartW - padR)
	for i := len(c.series) - 1; i >= 0; i-- {
		s := c.series[i]
		w := float64(len(s.name))*7 + 30
		lx -= w
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="14" x2="%.1f" y2="14" stroke="%s" stroke-width="3"%s/><text class="legend" x="%.1f" y="18">%s</text>`,
			lx, lx+18, s.color, dash, lx+22, esc(s.name))
	}
	// Phase and fault windows.
	lane := 0
	for _, bd := range c.bands {
		from, to := math.Max(bd.from, c.xMin), math.Min(bd.to, c.xMax)
		if to <= from {
			continue
		}
		op := "0.10"
		if bd.kind == "fault" {
			op = "0.16"
		}
		fmt.Fprintf(&b, `<rect class="band" data-band="%s" data-label="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%s"><title>%s: %.1fs to %.1fs</title></rect>`,
			bd.kind, esc(bd.label), x(from), top, x(to)-x(from), h, bandFill[bd.kind], op, esc(bd.label), bd.from, bd.to)
		if bd.kind == "fault" {
			ly := float64(padT + lane*faultLane)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" fill-opacity="0.85"/><text class="fault-label" x="%.1f" y="%.1f">%s</text>`,
				x(from), ly, x(to)-x(from), faultLane-2, vermilion, x(from)+4, ly+faultLane-5, esc(bd.label))
			lane++
		} else if x(to)-x(from) > 64 {
			fmt.Fprintf(&b, `<text class="band-label" x="%.1f" y="%.1f">%s</text>`, x(from)+4, top+h-6, esc(bd.label))
		}
	}
	// Grid and axes.
	for i := 0; i <= 20; i++ { // counted, not summed: a float step can vanish against a large value
		v := float64(i) * yStep
		if v > yMax+yStep/2 {
			break
		}
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/><text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, y(v), chartW-padR, y(v), padL-6, y(v)+4, esc(c.yFormat(v)))
	}
	xStep := niceStep(c.xMax-c.xMin, 10)
	for i := 0; i <= 30; i++ {
		v := (math.Ceil(c.xMin/xStep) + float64(i)) * xStep
		if v > c.xMax+1e-9 {
			break
		}
		fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
			x(v), top+h, x(v), top+h+4, x(v), top+h+17, trimFloat(v))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, padL, top+h, chartW-padR, top+h)
	fmt.Fprintf(&b, `<text class="axis-label" x="%.1f" y="%d" text-anchor="middle">%s</text>`, padL+plotW/2.0, height-6, esc(c.xLabel))
	fmt.Fprintf(&b, `<text class="axis-label" transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, top+h/2, esc(c.unit))
	// Series, each point with a tooltip.
	for _, s := range c.series {
		if len(s.pts) == 0 {
			continue
		}
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.x), y(math.Min(p.y, yMax))))
		}
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<g class="series" data-series="%s" data-points="%d"><polyline fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"%s points="%s"/>`,
			esc(s.name), len(s.pts), s.color, dash, strings.Join(pts, " "))
		for _, p := range s.pts {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s" fill-opacity="0"><title>%s at %ss: %s</title></circle>`,
				x(p.x), y(math.Min(p.y, yMax)), s.color, esc(s.name), trimFloat(p.x), esc(c.yFormat(p.y)))
		}
		b.WriteString(`</g>`)
	}
	for _, m := range c.markers {
		if m.at < c.xMin || m.at > c.xMax {
			continue
		}
		fmt.Fprintf(&b, `<g class="marker" data-marker="%s"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="3 3"/><text class="marker-label" x="%.1f" y="%.1f">%s</text></g>`,
			esc(m.label), x(m.at), top, x(m.at), top+h, vermilion, x(m.at)+4, top+12, esc(m.label))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func trimFloat(v float64) string {
	s := strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	if s == "-0" {
		return "0"
	}
	return s
}

// Formats for the y axes.
func fmtPercent(v float64) string { return trimFloat(v*100) + "%" }
func fmtRate(v float64) string    { return trimFloat(v) + "/s" }
func fmtMillis(v float64) string {
	switch {
	case v >= 1:
		return trimFloat(v) + " s"
	case v >= 0.01 || v == 0:
		return trimFloat(v*1000) + " ms"
	}
	return fmt.Sprintf("%.2f ms", v*1000)
}
