package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
)

// writeReport reads runs (one JSON figures object a line), takes the median
// of each figure per target and writes them as ratios to direct TCP.
func writeReport(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runs := map[string][]figures{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var x figures
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, ok := runs[x.Target]; !ok {
			order = append(order, x.Target)
		}
		runs[x.Target] = append(runs[x.Target], x)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	med := func(t string, get func(figures) float64) float64 {
		var v []float64
		for _, r := range runs[t] {
			v = append(v, get(r))
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	up := func(f figures) float64 { return f.UpMiBps }
	down := func(f figures) float64 { return f.DownMiBps }
	rtt := func(f figures) float64 { return f.RTTp50us }
	conn := func(f figures) float64 { return f.ConnPerSec }
	idle := func(f figures) float64 { return f.IdleKiBPerConn }
	lat := func(f figures) float64 { return f.LatencyErrorMS }
	lat99 := func(f figures) float64 { return f.LatencyP99MS }
	d := "direct"
	fmt.Fprintf(w, "| target | runs | throughput up (× direct) | throughput down (× direct) | 64 B round trip p50 (× direct) | new connections/s (× direct) | RSS per idle connection | latency toxic 100 ms: error of the mean, of p99 |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|\n")
	for _, t := range order {
		cell := func(get func(figures) float64, unit string) string {
			v, base := med(t, get), med(d, get)
			if t == d || base == 0 {
				return fmt.Sprintf("1.00 (%.0f %s)", v, unit)
			}
			return fmt.Sprintf("**%.2f×** (%.0f %s)", v/base, v, unit)
		}
		idleCell, latCell := "–", "–"
		if v := med(t, idle); v != 0 {
			idleCell = fmt.Sprintf("%.1f KiB", v)
		}
		if v := med(t, lat); v != 0 {
			latCell = fmt.Sprintf("%+.2f ms, p99 %+.2f ms", v, med(t, lat99))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", t, len(runs[t]),
			cell(up, "MiB/s"), cell(down, "MiB/s"), cell(rtt, "µs"), cell(conn, "/s"), idleCell, latCell)
	}

	// The targets faultline's proxy is held to.
	ratio := func(t string, get func(figures) float64) float64 {
		if b := med(d, get); b != 0 {
			return med(t, get) / b
		}
		return 0
	}
	worst := func(t string) float64 { return min(ratio(t, up), ratio(t, down)) }
	fl, fl3 := "faultline", "faultline, 3 toxics each stream"
	if _, ok := runs[fl]; !ok {
		return nil
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	fmt.Fprintf(w, "\n| figure | must reach | goal | measured | |\n|---|---|---|---|---|\n")
	row := func(name, must, goal string, v float64, format string, ok bool) {
		fmt.Fprintf(w, "| %s | %s | %s | "+format+" | %s |\n", name, must, goal, v, mark(ok))
	}
	row("single-stream throughput, no toxics (worse direction)", "≥ 0.80×", "≥ 0.90×", worst(fl), "%.2f×", worst(fl) >= 0.8)
	row("same, 3 toxics each stream", "≥ 0.50×", "≥ 0.60×", worst(fl3), "%.2f×", worst(fl3) >= 0.5)
	row("64-byte round trip p50", "≤ 2.0×", "≤ 1.6×", ratio(fl, rtt), "%.2f×", ratio(fl, rtt) <= 2)
	row("sequential new connections/s", "≥ 0.60×", "≥ 0.80×", ratio(fl, conn), "%.2f×", ratio(fl, conn) >= 0.6)
	row("RSS per idle connection, 3 toxics each stream", "≤ 16 KiB", "≤ 12 KiB", med(fl3, idle), "%.1f KiB", med(fl3, idle) <= 16)
	e := med(fl, lat)
	row("latency toxic asked 100 ms, measured mean error", "within 1 ms", "within 0.5 ms", e, "%+.2f ms", e <= 1 && e >= -1)
	return nil
}
