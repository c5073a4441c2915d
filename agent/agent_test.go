package agent_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/faultline/faultline/agent"
	"github.com/faultline/faultline/kubetest"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/proxy"
)

func TestMain(m *testing.M) {
	agent.TerminationLog = os.DevNull
	code := kubetest.Main(m) // stops the node the pod tests share
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// pod is a network namespace of the test's own on a bridge, standing for a
// pod's, and a TCP server on the bridge's host side that it talks to.
type pod struct {
	run    string
	ns     netfault.NS
	server string // IP:PORT
}

func newPod(t *testing.T) pod {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the agent's tests make network namespaces: run them as root")
	}
	if lacks := netfault.Lacks(context.Background()); len(lacks) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("this kernel lacks %v", lacks)
		}
		t.Skipf("this kernel lacks %v", lacks)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	run := "a" + hex.EncodeToString(b)
	var mu sync.Mutex
	var ops []netfault.Op
	j := func(op netfault.Op) error { mu.Lock(); defer mu.Unlock(); ops = append(ops, op); return nil }
	t.Cleanup(func() {
		for i := len(ops) - 1; i >= 0; i-- {
			if err := netfault.Undo(context.Background(), ops[i]); err != nil {
				t.Errorf("undo %s: %v", ops[i], err)
			}
		}
		if left, err := netfault.Leftovers(run); err != nil || len(left) > 0 {
			t.Errorf("left by run %s: %v %v", run, left, err)
		}
	})
	nw, err := netfault.NewNetwork(run, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := nw.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	in, err := nw.AddInstance(ctx, 0, j)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	// The bridge's host-side address, as a pod reaches its node.
	return pod{run: run, ns: in.NS, server: net.JoinHostPort(nw.Host.String(), fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))}
}

// dial connects from the pod's namespace: nil, or the error (refused
// while a rejecting partition holds).
func (p pod) dial(t *testing.T) error {
	t.Helper()
	var derr error
	err := p.ns.Do(func() error {
		c, err := net.DialTimeout("tcp", p.server, 2*time.Second)
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return derr
}

// session is an agent running in the pod's namespace, spoken to as the
// runner does.
type session struct {
	in    *io.PipeWriter
	lines chan string
	done  chan struct{} // closed when the agent returned err
	err   error
	stop  chan struct{}
}

func start(t *testing.T, p pod, lease time.Duration, startBy time.Time) *session {
	t.Helper()
	to, err := netfault.ParseDest(p.server)
	if err != nil {
		t.Fatal(err)
	}
	return startSpec(t, p, agent.Spec{Run: p.run, Fault: "cut-0", Partition: &netfault.Partition{To: []netfault.Dest{to}, Reject: true},
		Lease: agent.Duration(lease), StartBy: startBy})
}

func startSpec(t *testing.T, p pod, spec agent.Spec) *session {
	t.Helper()
	parsed, err := agent.ParseSpec(spec.String())
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{in: inW, lines: make(chan string, 16), done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		s.err = agent.RunIn(context.Background(), p.ns.Path, parsed, inR, outW, s.stop)
		outW.Close()
		close(s.done)
	}()
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
		<-s.done
		for range s.lines {
		}
	})
	return s
}

func (s *session) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (s *session) expect(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case line, ok := <-s.lines:
		if !ok || !strings.HasPrefix(line, prefix) {
			t.Fatalf("agent said %q (open %v), want %q…", line, ok, prefix)
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatalf("agent said nothing in 30s, want %q…", prefix)
	}
	return ""
}

func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestLeaseRunsOut: the fault holds while it is renewed, for longer than
// its lease, and once the renewals stop the agent takes it back by itself.
func TestLeaseRunsOut(t *testing.T) {
	p := newPod(t)
	if err := p.dial(t); err != nil {
		t.Fatalf("before the agent: %v", err)
	}
	lease := 2 * time.Second
	s := start(t, p, lease, time.Now().Add(time.Minute))
	s.send(t, agent.Apply)
	s.expect(t, agent.Applied)
	// Renewed for a lease and a half: still in place.
	for range 12 {
		s.send(t, agent.Renew)
		if err := p.dial(t); !refused(err) {
			t.Fatalf("while renewed: dial %v, want refused", err)
		}
		time.Sleep(lease / 4) // the renewals' pace, as the runner's; not a synchronization
	}
	if line := s.expect(t, agent.Reverted); !strings.Contains(line, "lease of 2s ran out") {
		t.Errorf("agent said %q, want the lease named", line)
	}
	if err := p.dial(t); err != nil {
		t.Errorf("after the lease ran out: %v, want connected", err)
	}
	<-s.done
	if s.err != nil {
		t.Errorf("agent: %v", s.err)
	}
}

// TestRevertAndSignal: "revert" and a signal both take the fault back at
// once, long before the lease.
func TestRevertAndSignal(t *testing.T) {
	for _, how := range []string{"revert", "signal", "input closed"} {
		t.Run(how, func(t *testing.T) {
			p := newPod(t)
			s := start(t, p, time.Hour, time.Now().Add(time.Minute))
			s.send(t, agent.Apply)
			s.expect(t, agent.Applied)
			if err := p.dial(t); !refused(err) {
				t.Fatalf("applied: dial %v, want refused", err)
			}
			switch how {
			case "revert":
				s.send(t, agent.Revert)
				s.expect(t, agent.Reverted+"told to")
			case "signal":
				close(s.stop)
				s.expect(t, agent.Reverted+"stopped by a signal")
			case "input closed": // nobody can renew: the lease (an hour) decides, so a signal ends it
				s.in.Close()
				if err := p.dial(t); !refused(err) {
					t.Fatalf("input closed: dial %v, want still refused (the lease holds)", err)
				}
				close(s.stop)
				s.expect(t, agent.Reverted)
			}
			if err := p.dial(t); err != nil {
				t.Errorf("reverted: %v, want connected", err)
			}
		})
	}
}

// TestNothingAppliedLate: an agent that starts after its start_by, or is
// never told to apply within its lease, applies nothing.
func TestNothingAppliedLate(t *testing.T) {
	p := newPod(t)
	s := start(t, p, time.Minute, time.Now().Add(-time.Second))
	s.expect(t, agent.Reverted+"started after its start_by")
	s = start(t, p, 200*time.Millisecond, time.Now().Add(time.Minute))
	s.expect(t, agent.Reverted+"no apply in time")
	if err := p.dial(t); err != nil {
		t.Errorf("dial %v, want connected", err)
	}
}

func TestParseSpecRefusesBadInput(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{`{`, "unexpected EOF"},
		{`{"run":"r","fault":"f","lease":"1s","start_by":"2026-01-01T00:00:00Z"}`, "exactly one of"},
		{`{"run":"r","fault":"f","lease":"0s","start_by":"2026-01-01T00:00:00Z","partition":{"To":["10.0.0.1"]}}`, "lease must be positive"},
		{`{"run":"r","fault":"f","lease":"x","start_by":"2026-01-01T00:00:00Z","partition":{"To":["10.0.0.1"]}}`, "invalid duration"},
		{`{"run":"r","fault":"f","lease":"1s","start_by":"2026-01-01T00:00:00Z","partition":{"To":["nowhere"]}}`, "nowhere"},
		{`{"run":"r","fault":"f","lease":"1s","extra":1}`, "unknown field"},
	} {
		if _, err := agent.ParseSpec(tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSpec(%s) = %v, want an error with %q", tt.spec, err, tt.want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(`{"run":"r","fault":"f","lease":"1s","start_by":"2026-01-01T00:00:00Z","packet_loss":{"Percent":10,"To":["10.0.0.0/8:80"]}}`)
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := agent.ParseSpec(s)
		if err != nil {
			return
		}
		if _, err := agent.ParseSpec(sp.String()); err != nil {
			t.Fatalf("a spec read back: %v (%s)", err, sp)
		}
	})
}

// read connects from the pod's namespace and returns what the server
// said before the connection ended.
func (p pod) read(t *testing.T) (string, error) {
	t.Helper()
	var got string
	var rerr error
	err := p.ns.Do(func() error {
		c, err := net.DialTimeout("tcp", p.server, 2*time.Second)
		if err != nil {
			rerr = err
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		got, rerr = string(b), err
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, rerr
}

// TestInterceptToxicAndDown: an intercept puts the pod's connections
// through a proxy in its namespace, with a toxic on it (limit_data: one
// byte, then closed), or with the proxy down (refused); both are gone
// once reverted.
func TestInterceptToxicAndDown(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("down=%v", down), func(t *testing.T) {
			p := newPod(t)
			if got, err := p.read(t); err != nil || got != "hello\n" {
				t.Fatalf("before: %q %v", got, err)
			}
			to, err := netfault.ParseDest(p.server)
			if err != nil {
				t.Fatal(err)
			}
			ic := &agent.Intercept{To: []netfault.Dest{to}, Down: down}
			if !down {
				ic.Toxics = []proxy.ToxicInfo{{Name: "one-byte", Type: "limit_data", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"bytes": 1}}}
			}
			s := startSpec(t, p, agent.Spec{Run: p.run, Fault: "slow-0", Intercept: ic, Lease: agent.Duration(time.Hour), StartBy: time.Now().Add(time.Minute)})
			s.send(t, agent.Apply)
			s.expect(t, agent.Applied)
			got, err := p.read(t)
			switch {
			case down && !refused(err):
				t.Errorf("proxy down: read %q %v, want refused", got, err)
			case !down && got != "h":
				t.Errorf("limit_data 1: read %q %v, want one byte", got, err)
			}
			s.send(t, agent.Revert)
			s.expect(t, agent.Reverted+"told to")
			if got, err := p.read(t); err != nil || got != "hello\n" {
				t.Errorf("reverted: %q %v, want hello", got, err)
			}
		})
	}
}
