// Command interceptbench measures a TCP client in one network namespace
// reaching a server in another: directly, through an explicit faultline
// proxy (the client dials the proxy), and through an intercept (the client
// dials the server; nf_tables redirects it into the proxy). Client, server
// and proxy are three processes on the same cores. Needs root.
//
//	interceptbench -runs 3 -out bench/results/intercept.md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/proxy"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == netfault.ExecSubcommand {
		err := netfault.ExecMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, "interceptbench:", err)
		os.Exit(127)
	}
	serve := flag.String("serve", "", "serve echo on PORT and a sink on PORT+1 (inside a namespace)")
	client := flag.String("client", "", "measure against echo HOST:PORT and sink HOST:PORT+1, print JSON")
	name := flag.String("name", "", "the target's name, with -client")
	runs := flag.Int("runs", 3, "runs of each target (medians)")
	out := flag.String("out", "bench/results/intercept.md", "report file")
	flag.Parse()
	var err error
	switch {
	case *serve != "":
		err = serveMain(*serve)
	case *client != "":
		err = clientMain(*client, *name)
	default:
		err = benchMain(*runs, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interceptbench:", err)
		os.Exit(1)
	}
}

// figures are one run's measures of one target.
type figures struct {
	Target     string  `json:"target"`
	RTTp50us   float64 `json:"rtt_p50_us"`
	MiBps      float64 `json:"throughput_mib_s"`
	ConnPerSec float64 `json:"conn_per_s"`
}

const (
	roundTrips = 5000
	sinkBytes  = 128 << 20
	newConns   = 2000
)

func serveMain(port string) error {
	echo, err := net.Listen("tcp4", "0.0.0.0:"+port)
	if err != nil {
		return err
	}
	var p int
	fmt.Sscan(port, &p)
	sink, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p+1))
	if err != nil {
		return err
	}
	go accept(sink, func(c net.Conn) { // read all, then one byte back
		_, _ = io.Copy(io.Discard, c)
		_, _ = c.Write([]byte{1})
	})
	accept(echo, func(c net.Conn) { _, _ = io.Copy(c, c) })
	return nil
}

func accept(ln net.Listener, h func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); h(c) }()
	}
}

func clientMain(echo, name string) error {
	host, port, err := net.SplitHostPort(echo)
	if err != nil {
		return err
	}
	var p int
	fmt.Sscan(port, &p)
	sink := net.JoinHostPort(host, fmt.Sprint(p+1))
	f := figures{Target: name}
	// Round trips of 64 bytes on one connection.
	c, err := net.DialTimeout("tcp4", echo, 5*time.Second)
	if err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 64)
	rtts := make([]time.Duration, 0, roundTrips)
	for range roundTrips {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		rtts = append(rtts, time.Since(start))
	}
	c.Close()
	slices.Sort(rtts)
	f.RTTp50us = float64(rtts[len(rtts)/2].Nanoseconds()) / 1e3
	// Throughput, client to server.
	c, err = net.DialTimeout("tcp4", sink, 5*time.Second)
	if err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(120 * time.Second))
	chunk := make([]byte, 256<<10)
	start := time.Now()
	for sent := 0; sent < sinkBytes; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return err
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return err
	}
	f.MiBps = float64(sinkBytes>>20) / time.Since(start).Seconds()
	c.Close()
	// New connections, one after the other: dial, 1-byte echo, close.
	start = time.Now()
	for range newConns {
		c, err := net.DialTimeout("tcp4", echo, 5*time.Second)
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(buf[:1]); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return err
		}
		c.Close()
	}
	f.ConnPerSec = newConns / time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(f)
}

// benchMain makes the namespaces, the server and the proxies, runs the
// client against each target, undoes everything and writes the report.
func benchMain(runs int, out string) (err error) {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	run := fmt.Sprintf("bench%d", os.Getpid())
	var ops []netfault.Op
	journal := func(op netfault.Op) error { ops = append(ops, op); return nil }
	defer func() {
		for i := len(ops) - 1; i >= 0; i-- {
			if uerr := netfault.Undo(context.Background(), ops[i]); uerr != nil && err == nil {
				err = uerr
			}
		}
	}()
	ctx := context.Background()
	nw, err := netfault.NewNetwork(run, netip.Prefix{})
	if err != nil {
		return err
	}
	if err := nw.Create(ctx, journal); err != nil {
		return err
	}
	cl, err := nw.AddInstance(ctx, 0, journal)
	if err != nil {
		return err
	}
	sv, err := nw.AddInstance(ctx, 1, journal)
	if err != nil {
		return err
	}
	srv := netfault.Command(self, sv.NS, self, "-serve", "9000")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	echo := netip.AddrPortFrom(sv.Addr, 9000)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := netfault.DialTCP(ctx, cl.NS, 0, echo)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The explicit proxies listen in the client's namespace too, on
	// consecutive ports, as a client re-pointed at faultline would use.
	var base int
	for i, up := range []string{echo.String(), netip.AddrPortFrom(sv.Addr, 9001).String()} {
		var ln *net.TCPListener
		if i == 0 {
			if ln, err = netfault.ListenTCP(cl.NS, "127.0.0.1:0"); err != nil {
				return err
			}
			base = ln.Addr().(*net.TCPAddr).Port
		} else if ln, err = netfault.ListenTCP(cl.NS, fmt.Sprintf("127.0.0.1:%d", base+1)); err != nil {
			return fmt.Errorf("second proxy port: %w", err)
		}
		p := proxy.New(proxy.Config{Name: fmt.Sprint("explicit", i), Upstream: up, Listener: func() (net.Listener, error) { return ln, nil }})
		if err := p.Start(); err != nil {
			return err
		}
		defer p.Stop()
	}
	var raw []figures
	measure := func(name, target string) error {
		cmd := netfault.Command(self, cl.NS, self, "-client", target, "-name", name)
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		var f figures
		if err := json.Unmarshal(b, &f); err != nil {
			return err
		}
		raw = append(raw, f)
		fmt.Fprintf(os.Stderr, "%s: %s", name, b)
		return nil
	}
	for r := range runs {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", r+1, runs)
		if err := measure("direct", echo.String()); err != nil {
			return err
		}
		if err := measure("explicit proxy", fmt.Sprintf("127.0.0.1:%d", base)); err != nil {
			return err
		}
		if _, err := netfault.Tables(ctx, cl.NS, run, journal); err != nil {
			return err
		}
		p, op, err := netfault.InterceptTCP(ctx, cl.NS, run, fmt.Sprint("icpt", r), []netfault.Dest{{Prefix: netip.PrefixFrom(sv.Addr, 32)}}, proxy.Config{Name: "intercept"}, journal)
		if err != nil {
			return err
		}
		merr := measure("intercept", echo.String())
		uerr := netfault.Undo(ctx, op)
		p.Stop()
		if merr != nil || uerr != nil {
			return fmt.Errorf("%v %v", merr, uerr)
		}
	}
	return writeReport(out, runs, raw)
}

func writeReport(out string, runs int, raw []figures) error {
	med := func(target string, get func(figures) float64) float64 {
		var v []float64
		for _, f := range raw {
			if f.Target == target {
				v = append(v, get(f))
			}
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Intercept figures\n\nWritten by `bench/intercept.sh` on %s (%d cores, %s). ", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "Medians of %d runs; ratios are to direct TCP measured in the same run.\n", runs)
	fmt.Fprintf(&b, "The client runs in one isolated namespace, the server in another on the same bridge, the proxy in the process that made them: three processes on the same cores.\n")
	fmt.Fprintf(&b, "Round trip: %d echoes of 64 bytes on one connection. Throughput: %d MiB client to server. New connections: %d sequential (dial, 1-byte echo, close).\n", roundTrips, sinkBytes>>20, newConns)
	fmt.Fprintf(&b, "Explicit proxy: the client dials a faultline proxy on 127.0.0.1 in its namespace. Intercept: the client dials the server's address; an nf_tables redirect sends it into the same proxy, which dials the original destination from the client's namespace.\n\n")
	fmt.Fprintf(&b, "| target | 64 B round trip p50 (× direct) | throughput (× direct) | new connections/s (× direct) |\n|---|---|---|---|\n")
	rtt := func(f figures) float64 { return f.RTTp50us }
	thr := func(f figures) float64 { return f.MiBps }
	cps := func(f figures) float64 { return f.ConnPerSec }
	for _, t := range []string{"direct", "explicit proxy", "intercept"} {
		cell := func(get func(figures) float64, unit string) string {
			v := med(t, get)
			return fmt.Sprintf("%.2f (%.0f %s)", v/med("direct", get), v, unit)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t, cell(rtt, "µs"), cell(thr, "MiB/s"), cell(cps, "/s"))
	}
	fmt.Fprintf(&b, "\nIntercept against explicit proxy: round trip %.2f×, throughput %.2f×, new connections/s %.2f×.\n",
		med("intercept", rtt)/med("explicit proxy", rtt), med("intercept", thr)/med("explicit proxy", thr), med("intercept", cps)/med("explicit proxy", cps))
	fmt.Fprintf(&b, "\nRaw runs (JSON lines):\n\n```\n")
	for _, f := range raw {
		j, _ := json.Marshal(f)
		fmt.Fprintf(&b, "%s\n", j)
	}
	fmt.Fprintf(&b, "```\n")
	if err := os.MkdirAll(dirOf(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return "."
}
