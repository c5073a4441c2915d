// Command proxybench measures a Toxiproxy-compatible proxy server against
// direct loopback TCP: single-stream throughput each way, 64-byte round
// trip, sequential new connections, memory per idle connection, and the
// accuracy of a 100 ms latency toxic (mean and 99th percentile of its
// error). bench/run.sh runs it; it prints one
// JSON object of figures per run.
//
// It starts its own upstream servers on loopback and drives the proxy
// server at -api, whose process -pid is read for memory.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/faultline/faultline/proxy"
)

type figures struct {
	Target          string  `json:"target"`
	UpMiBps         float64 `json:"up_mib_s"`
	DownMiBps       float64 `json:"down_mib_s"`
	RTTp50us        float64 `json:"rtt_p50_us"`
	ConnPerSec      float64 `json:"conn_per_s"`
	IdleKiBPerConn  float64 `json:"idle_kib_per_conn,omitempty"`
	LatencyErrorMS  float64 `json:"latency_100ms_error_ms,omitempty"`
	LatencyP99MS    float64 `json:"latency_100ms_p99_error_ms,omitempty"`
	ThroughputBytes int64   `json:"throughput_bytes"`
}

func main() {
	api := flag.String("api", "", "proxy API URL; empty measures direct TCP")
	pid := flag.Int("pid", 0, "pid of the proxy server, for memory")
	toxics := flag.Bool("toxics", false, "add 3 do-nothing toxics on each stream (latency 0, unlimited bandwidth, huge limit_data)")
	size := flag.Int64("size", 512<<20, "bytes per throughput run, each way")
	idle := flag.Int("idle", 2000, "idle connections for the memory figure")
	name := flag.String("name", "direct", "name of this target in the output")
	only := flag.String("only", "", "comma-separated figures to measure (up,down,rtt,conn,idle,latency); empty: all")
	upstreams := flag.Bool("upstreams", false, "run the upstream servers (sink, source, echo), print their addresses as flags, and serve until stdin closes")
	sink := flag.String("sink", "", "address of the sink upstream")
	source := flag.String("source", "", "address of the source upstream")
	echo := flag.String("echo", "", "address of the echo upstream")
	through := flag.String("through", "", "SINK,SOURCE,ECHO: addresses of another relay already in front of the three upstreams")
	freePort := flag.Bool("freeport", false, "print a free loopback port and exit")
	report := flag.String("report", "", "read the JSON lines of earlier runs from this file and print the Markdown report")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("proxybench: ")
	if *freePort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return
	}
	if *report != "" {
		check(writeReport(*report, os.Stdout))
		return
	}

	if *upstreams {
		runUpstreams(*size)
		return
	}
	if *sink == "" || *source == "" || *echo == "" {
		log.Fatal("-sink, -source and -echo are required (from a -upstreams process)")
	}

	f := figures{Target: *name, ThroughputBytes: *size}
	var cl *proxy.Client
	addr := func(up string) string { return up }
	if *through != "" {
		via := strings.Split(*through, ",")
		if len(via) != 3 {
			log.Fatal("-through wants SINK,SOURCE,ECHO")
		}
		m := map[string]string{*sink: via[0], *source: via[1], *echo: via[2]}
		addr = func(up string) string { return m[up] }
	}
	if *api != "" {
		cl = proxy.NewClient(*api, "")
		ctx := context.Background()
		n := 0
		addr = func(up string) string {
			n++
			p, err := cl.CreateProxy(ctx, fmt.Sprintf("bench-%d-%d", os.Getpid(), n), "127.0.0.1:0", up)
			check(err)
			if *toxics {
				addToxics(ctx, cl, p.Name)
			}
			return p.Listen
		}
	}

	want := func(fig string) bool { return *only == "" || slices.Contains(strings.Split(*only, ","), fig) }
	if want("up") {
		f.UpMiBps = throughputUp(addr(*sink), *size)
	}
	if want("down") {
		f.DownMiBps = throughputDown(addr(*source), *size)
	}
	echoAddr := addr(*echo)
	if want("rtt") {
		f.RTTp50us = rttP50(echoAddr)
	}
	if want("conn") {
		f.ConnPerSec = connRate(echoAddr)
	}
	if *pid != 0 && want("idle") {
		f.IdleKiBPerConn = idleMemory(echoAddr, *pid, *idle)
	}
	if cl != nil && want("latency") {
		f.LatencyErrorMS, f.LatencyP99MS = latencyAccuracy(cl, *echo)
	}
	check(json.NewEncoder(os.Stdout).Encode(f))
}

// runUpstreams serves the upstreams in this process, apart from the
// client, as real servers are: each hop then costs a wakeup of another
// process, for direct TCP as for a proxy.
func runUpstreams(size int64) {
	sink := serve(func(c net.Conn) { // reads size bytes, then answers one byte
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			n, err := c.Read(buf[:min(int64(len(buf)), left)])
			if err != nil {
				return
			}
			left -= int64(n)
		}
		_, _ = c.Write([]byte{1})
	})
	source := serve(func(c net.Conn) { // sends size bytes, then closes
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			n := min(int64(len(buf)), left)
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			left -= n
		}
	})
	echo := serve(func(c net.Conn) { _, _ = io.Copy(c, c) })
	fmt.Printf("-sink %s -source %s -echo %s\n", sink, source, echo)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func addToxics(ctx context.Context, cl *proxy.Client, p string) {
	for _, s := range []string{"upstream", "downstream"} {
		for _, t := range []proxy.ToxicInfo{
			{Type: "latency", Attributes: map[string]any{"latency": 0}},
			{Type: "bandwidth", Attributes: map[string]any{"rate": 100_000_000}}, // 100 GB/s
			{Type: "limit_data", Attributes: map[string]any{"bytes": int64(1) << 60}},
		} {
			t.Stream, t.Toxicity = s, 1
			_, err := cl.AddToxic(ctx, p, t)
			check(err)
		}
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func serve(handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func mibps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

// throughputUp sends size bytes client → server and times until the server
// has read them all.
func throughputUp(addr string, size int64) float64 {
	c, err := net.Dial("tcp", addr)
	check(err)
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		_, err := c.Write(buf[:n])
		check(err)
		left -= n
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	check(err)
	return mibps(size, time.Since(start))
}

// throughputDown reads size bytes server → client.
func throughputDown(addr string, size int64) float64 {
	c, err := net.Dial("tcp", addr)
	check(err)
	defer c.Close()
	start := time.Now()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		check(err)
	}
	if n != size {
		log.Fatalf("downstream: got %d bytes, want %d", n, size)
	}
	return mibps(size, time.Since(start))
}

func rttP50(addr string) float64 {
	c, err := net.Dial("tcp", addr)
	check(err)
	defer c.Close()
	msg, got := make([]byte, 64), make([]byte, 64)
	const warm, n = 2000, 20000
	samples := make([]time.Duration, 0, n)
	for i := range warm + n {
		start := time.Now()
		_, err := c.Write(msg)
		check(err)
		_, err = io.ReadFull(c, got)
		check(err)
		if i >= warm {
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	return float64(samples[len(samples)/2].Nanoseconds()) / 1e3
}

// connRate opens connections one after the other, each echoing one byte.
func connRate(addr string) float64 {
	const n = 3000
	b := make([]byte, 1)
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", addr)
		check(err)
		_, err = c.Write(b)
		check(err)
		_, err = io.ReadFull(c, b)
		check(err)
		c.Close()
	}
	return n / time.Since(start).Seconds()
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			check(err)
			return kb
		}
	}
	log.Fatal("no VmRSS")
	return 0
}

// idleMemory opens n connections through the proxy, each echoing once so
// both legs are up, and returns the proxy's RSS growth per connection.
func idleMemory(addr string, pid, n int) float64 {
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	before := rss(pid)
	conns := make([]net.Conn, 0, n)
	b := make([]byte, 1)
	for range n {
		c, err := net.Dial("tcp", addr)
		check(err)
		_, err = c.Write(b)
		check(err)
		_, err = io.ReadFull(c, b)
		check(err)
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	after := rss(pid)
	for _, c := range conns {
		c.Close()
	}
	return float64(after-before) / float64(n)
}

// latencyAccuracy measures what a 100 ms latency toxic downstream on a
// fresh proxy adds to 64-byte echoes: a message every 10 ms, each timed on
// its own, with the toxic and without it (the same pace, so that both see
// the same wake-ups from idle). It returns the mean of the added delay and
// its 99th percentile, less 100 ms.
func latencyAccuracy(cl *proxy.Client, echo string) (meanErr, p99Err float64) {
	ctx := context.Background()
	p, err := cl.CreateProxy(ctx, fmt.Sprintf("bench-latency-%d", os.Getpid()), "127.0.0.1:0", echo)
	check(err)
	c, err := net.Dial("tcp", p.Listen)
	check(err)
	defer c.Close()
	const n, gap = 300, 10 * time.Millisecond
	paced := func() []time.Duration {
		var sent [n]atomic.Int64 // unix ns

		done := make(chan []time.Duration)
		go func() {
			got := make([]byte, 64)
			rtts := make([]time.Duration, 0, n)
			for range n {
				_, err := io.ReadFull(c, got)
				check(err)
				i := binary.BigEndian.Uint32(got)
				rtts = append(rtts, time.Since(time.Unix(0, sent[i].Load())))
			}
			done <- rtts
		}()
		msg := make([]byte, 64)
		next := time.Now()
		for i := range n {
			time.Sleep(time.Until(next))
			next = next.Add(gap)
			binary.BigEndian.PutUint32(msg, uint32(i))
			sent[i].Store(time.Now().UnixNano())
			_, err := c.Write(msg)
			check(err)
		}
		return <-done
	}
	mean := func(d []time.Duration) float64 {
		var t time.Duration
		for _, x := range d {
			t += x
		}
		return (t / time.Duration(len(d))).Seconds() * 1e3
	}
	paced() // warm up
	base := mean(paced())
	_, err = cl.AddToxic(ctx, p.Name, proxy.ToxicInfo{Type: "latency", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"latency": 100}})
	check(err)
	with := paced()
	slices.Sort(with)
	meanErr = mean(with) - base - 100
	p99Err = with[len(with)*99/100].Seconds()*1e3 - base - 100
	return meanErr, p99Err
}
