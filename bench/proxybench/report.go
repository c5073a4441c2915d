package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// The targets bench/run.sh measures, by the names it gives them.
const (
	direct     = "direct"
	faultline  = "faultline"
	faultline3 = "faultline, 3 toxics each stream"
	toxiproxy  = "toxiproxy"
	toxiproxy3 = "toxiproxy, 3 toxics each stream"
	cRelay     = "C splice relay (reference)"
)

// runs holds the figures of each target, in the order first seen.
type runs struct {
	by    map[string][]figures
	order []string
}

func readRuns(path string) (*runs, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &runs{by: map[string][]figures{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var x figures
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if _, ok := r.by[x.Target]; !ok {
			r.order = append(r.order, x.Target)
		}
		r.by[x.Target] = append(r.by[x.Target], x)
	}
	return r, sc.Err()
}

// med is the median of a figure over a target's runs; 0 when there are
// none or the figure was not measured.
func (r *runs) med(target string, get func(figures) float64) float64 {
	var v []float64
	for _, x := range r.by[target] {
		v = append(v, get(x))
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// relays are the reference relays measured (no toxics, no API).
func (r *runs) relays() []string {
	var out []string
	for _, t := range r.order {
		if strings.HasSuffix(t, "(reference)") {
			out = append(out, t)
		}
	}
	return out
}

// best is the reference relay with the best median of a figure, and that
// median; higher is better unless lower says otherwise.
func (r *runs) best(get func(figures) float64, lower bool) (string, float64) {
	name, v := "", 0.0
	for _, t := range r.relays() {
		x := r.med(t, get)
		if x != 0 && (v == 0 || lower && x < v || !lower && x > v) {
			name, v = t, x
		}
	}
	return name, v
}

var (
	up    = func(f figures) float64 { return f.UpMiBps }
	down  = func(f figures) float64 { return f.DownMiBps }
	rtt   = func(f figures) float64 { return f.RTTp50us }
	conn  = func(f figures) float64 { return f.ConnPerSec }
	idle  = func(f figures) float64 { return f.IdleKiBPerConn }
	lat   = func(f figures) float64 { return f.LatencyErrorMS }
	lat99 = func(f figures) float64 { return f.LatencyP99MS }
)

// writeReport reads runs (one JSON figures object a line) and writes, from
// the median of each figure per target: every target as measured, with
// ratios to direct TCP; then faultline's figures against Toxiproxy, the
// best reference relay and direct TCP, the limit here; then that in words.
func writeReport(path string, w io.Writer) error {
	r, err := readRuns(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "## Every target\n\n")
	fmt.Fprintf(w, "| target | runs | throughput up (× direct) | throughput down (× direct) | 64 B round trip p50 (× direct) | new connections/s (× direct) | RSS per idle connection | latency toxic 100 ms: error of the mean, of p99 |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|\n")
	for _, t := range r.order {
		cell := func(get func(figures) float64, unit string) string {
			v, base := r.med(t, get), r.med(direct, get)
			switch {
			case v == 0:
				return "–"
			case t == direct || base == 0:
				return fmt.Sprintf("1.00 (%.0f %s)", v, unit)
			}
			return fmt.Sprintf("**%.2f×** (%.0f %s)", v/base, v, unit)
		}
		idleCell, latCell := "–", "–"
		if v := r.med(t, idle); v != 0 {
			idleCell = fmt.Sprintf("%.1f KiB", v)
		}
		if v := r.med(t, lat); v != 0 {
			latCell = fmt.Sprintf("%+.2f ms, p99 %+.2f ms", v, r.med(t, lat99))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", t, len(r.by[t]),
			cell(up, "MiB/s"), cell(down, "MiB/s"), cell(rtt, "µs"), cell(conn, "/s"), idleCell, latCell)
	}
	if len(r.by[faultline]) == 0 {
		return nil
	}
	writeComparison(w, r)
	writeSummary(w, r)
	return nil
}

// writeComparison writes faultline's figures beside Toxiproxy's, the best
// reference relay's and direct TCP's.
func writeComparison(w io.Writer, r *runs) {
	fmt.Fprintf(w, "\n## Against Toxiproxy, the best relay and the limit\n\n")
	fmt.Fprintf(w, "Ratios are faultline's figure over the other's: above 1 is faultline ahead for throughput and connections, behind for round trips and memory.\n\n")
	fmt.Fprintf(w, "| figure | faultline | Toxiproxy 2.12 | × Toxiproxy | best reference relay | × best relay | direct TCP (the limit) |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|\n")
	row := func(name, fl, tp string, get func(figures) float64, unit string, lower bool) {
		f, t := r.med(fl, get), r.med(tp, get)
		relay, b := r.best(get, lower)
		ratio := func(a, b float64) string {
			if a == 0 || b == 0 {
				return "–"
			}
			return fmt.Sprintf("**%.2f×**", a/b)
		}
		val := func(v float64) string {
			if v == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f %s", v, unit)
		}
		relayCell := "–"
		if relay != "" {
			relayCell = fmt.Sprintf("%s (%s)", val(b), strings.TrimSuffix(relay, " (reference)"))
		}
		d := r.med(direct, get)
		if fl == faultline3 {
			relayCell, b, d = "–", 0, 0 // relays and direct TCP have no toxics
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", name, val(f), val(t), ratio(f, t), relayCell, ratio(f, b), val(d))
	}
	row("throughput up", faultline, toxiproxy, up, "MiB/s", false)
	row("throughput down", faultline, toxiproxy, down, "MiB/s", false)
	row("throughput up, 3 toxics each stream", faultline3, toxiproxy3, up, "MiB/s", false)
	row("throughput down, 3 toxics each stream", faultline3, toxiproxy3, down, "MiB/s", false)
	row("64 B round trip p50", faultline, toxiproxy, rtt, "µs", true)
	row("64 B round trip p50, 3 toxics each stream", faultline3, toxiproxy3, rtt, "µs", true)
	row("new connections/s", faultline, toxiproxy, conn, "/s", false)
	row("new connections/s, 3 toxics each stream", faultline3, toxiproxy3, conn, "/s", false)
	fl, tp := r.med(faultline, idle), r.med(toxiproxy, idle)
	fl3, tp3 := r.med(faultline3, idle), r.med(toxiproxy3, idle)
	fmt.Fprintf(w, "| RSS per idle connection | %.1f KiB | %.1f KiB | %s | %s | | |\n", fl, tp, ratioOf(fl, tp), relayIdle(r))
	fmt.Fprintf(w, "| same, 3 toxics each stream | %.1f KiB | %.1f KiB | %s | | | |\n", fl3, tp3, ratioOf(fl3, tp3))
	fmt.Fprintf(w, "| latency toxic 100 ms: error of the mean | %+.2f ms | %+.2f ms | | | | goal: within 0.5 ms |\n", r.med(faultline, lat), r.med(toxiproxy, lat))
	fmt.Fprintf(w, "| latency toxic 100 ms: error of p99 | %+.2f ms | %+.2f ms | | | | goal: within 2 ms |\n", r.med(faultline, lat99), r.med(toxiproxy, lat99))
}

func ratioOf(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("**%.2f×**", a/b)
}

func relayIdle(r *runs) string {
	if v := r.med(cRelay, idle); v != 0 {
		return fmt.Sprintf("%.1f KiB (C splice relay)", v)
	}
	return "–"
}

// writeSummary says the comparison in words, from the same medians.
func writeSummary(w io.Writer, r *runs) {
	span := func(vs ...float64) string {
		var ok []float64
		for _, v := range vs {
			if v > 0 && v < 1e12 {
				ok = append(ok, v)
			}
		}
		if len(ok) == 0 {
			return "–"
		}
		lo, hi := slices.Min(ok), slices.Max(ok)
		if fmt.Sprintf("%.1f", lo) == fmt.Sprintf("%.1f", hi) {
			return fmt.Sprintf("%.1f×", lo)
		}
		return fmt.Sprintf("%.1f–%.1f×", lo, hi)
	}
	q := func(a, b string, get func(figures) float64) float64 {
		if d := r.med(b, get); d != 0 {
			return r.med(a, get) / d
		}
		return 0
	}
	fmt.Fprintf(w, "\n## In short\n\n")
	if len(r.by[toxiproxy]) > 0 {
		fmt.Fprintf(w, "- Against Toxiproxy 2.12, measured the same way in the same run: %s its throughput, %s its round trip, %s its connection rate, and %s its memory per idle connection (with and without toxics).\n",
			span(q(faultline, toxiproxy, up), q(faultline, toxiproxy, down), q(faultline3, toxiproxy3, up), q(faultline3, toxiproxy3, down)),
			span(q(faultline, toxiproxy, rtt), q(faultline3, toxiproxy3, rtt)),
			span(q(faultline, toxiproxy, conn), q(faultline3, toxiproxy3, conn)),
			span(q(faultline, toxiproxy, idle), q(faultline3, toxiproxy3, idle)))
	}
	if len(r.by[cRelay]) > 0 {
		fmt.Fprintf(w, "- Against the minimal C relay (a thread per direction, splice(2) through a pipe, nothing else): %s its round trip, %s its throughput, %s its connection rate.\n",
			span(q(faultline, cRelay, rtt), q(faultline3, cRelay, rtt)),
			span(q(faultline, cRelay, up), q(faultline, cRelay, down)),
			span(q(faultline, cRelay, conn)))
	}
	if name, b := r.best(rtt, true); name != "" && r.med(direct, rtt) != 0 {
		fmt.Fprintf(w, "- The limit: no relay measured here comes near direct TCP's round trip: the best reference relay (%s) takes %.1f× it, faultline %.1f×.\n",
			strings.TrimSuffix(name, " (reference)"), b/r.med(direct, rtt), q(faultline, direct, rtt))
	}
	fmt.Fprintf(w, "- A 100 ms latency toxic adds %+.2f ms to it on average and %+.2f ms at p99 (Toxiproxy: %+.2f ms and %+.2f ms).\n",
		r.med(faultline, lat), r.med(faultline, lat99), r.med(toxiproxy, lat), r.med(toxiproxy, lat99))
}
