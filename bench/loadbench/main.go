// Command loadbench measures faultline's load engine against a trivial
// HTTP server in another process: the most requests per second it
// sustains, and how exactly it keeps a constant rate. bench/load.sh runs it
// beside wrk and writes bench/results/load.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/faultline/faultline/load"
)

func main() {
	serve := flag.Bool("serve", false, "serve a trivial HTTP server on a free port; print its URL; run until stdin closes")
	url := flag.String("url", "", "target URL")
	rate := flag.Float64("rate", 10000, "requests per second")
	dur := flag.Duration("d", 5*time.Second, "how long")
	workers := flag.Uint64("workers", 0, "most requests in flight (0: the engine's default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the load engine to `file`")
	flag.Parse()
	log.SetFlags(0)
	if *serve {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("http://%s/\n", ln.Addr())
		go func() {
			_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
		}()
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	st, lag := load.NewStats(), load.NewStats()
	cpu0 := cpuTime()
	start := time.Now()
	var first, last time.Time
	n := 0
	err := load.Run(ctx, load.Config{Rate: *rate, Timeout: 5 * time.Second, MaxWorkers: *workers, Requests: []load.Request{{URL: *url}}}, func(r load.Result) {
		st.Add(r)
		lag.Add(load.Result{Latency: r.Sent.Sub(r.Intended), Code: 200})
		if n == 0 || r.Sent.Before(first) {
			first = r.Sent
		}
		if r.Sent.After(last) {
			last = r.Sent
		}
		n++
	})
	if err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	sum := st.Summary(elapsed)
	// The issued rate is what was sent, from the actual send times:
	// requests after the first over the time from the first send to the
	// last (the intended times keep the asked rate by construction).
	issued := 0.0
	if n > 1 {
		issued = float64(n-1) / last.Sub(first).Seconds()
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"asked_rate": *rate, "issued_rate": issued, "completed_per_s": float64(sum.Count) / elapsed.Seconds(),
		"errors": sum.Errors, "p50_ms": sum.P50.Seconds() * 1e3, "p99_ms": sum.P99.Seconds() * 1e3,
		"send_lag_p99_ms":    lag.Summary(elapsed).P99.Seconds() * 1e3,
		"cpu_us_per_request": float64(cpu.Microseconds()) / float64(max(sum.Count, 1)),
	})
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
