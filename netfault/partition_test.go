package netfault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// curlExit runs curl in ns against url and returns its exit code: 0
// answered, 7 refused, 28 timed out.
func curlExit(t *testing.T, ns NS, url string) int {
	t.Helper()
	_, code := runIn(t, ns, 20*time.Second, "curl", "-sS", "-o", "/dev/null", "--noproxy", "*",
		"--connect-timeout", "2", "--max-time", "5", url)
	return code
}

func TestPartitionBetweenNamespaces(t *testing.T) {
	for _, reject := range []bool{false, true} {
		t.Run(fmt.Sprintf("reject=%v", reject), func(t *testing.T) {
			r := newRun(t)
			_, insts := r.network(2)
			a, b := insts[0], insts[1]
			for _, inst := range insts {
				ln, err := ListenTCP(inst.NS, "0.0.0.0:8080")
				if err != nil {
					t.Fatal(err)
				}
				serveHTTP(t, ln, "x")
			}
			toB := fmt.Sprintf("http://%s:8080/", b.Addr)
			toA := fmt.Sprintf("http://%s:8080/", a.Addr)
			if code := curlExit(t, a.NS, toB); code != 0 {
				t.Fatalf("before the partition: curl a→b exit %d", code)
			}
			r.tables(a.NS)
			op := r.inject(a.NS, "part", Partition{To: []Dest{mustDest(t, b.Addr.String())}, Reject: reject})

			// Both directions are cut: a→b and b→a.
			want := 28 // curl: connect timed out
			if reject {
				want = 7 // curl: could not connect (refused)
			}
			for _, c := range []struct {
				from NS
				url  string
			}{{a.NS, toB}, {b.NS, toA}} {
				start := time.Now()
				code := curlExit(t, c.from, c.url)
				if code != want {
					t.Errorf("during the partition: curl %s exit %d, want %d", c.url, code, want)
				}
				if reject && time.Since(start) > 1500*time.Millisecond {
					t.Errorf("rejected connect took %v, want at once", time.Since(start))
				}
			}
			if err := Undo(context.Background(), op); err != nil {
				t.Fatal(err)
			}
			if got := chainsIn(t, a.NS, r.id); len(got) != 0 {
				t.Errorf("chains left after Undo: %v", got)
			}
			for _, url := range []string{toB} {
				if code := curlExit(t, a.NS, url); code != 0 {
					t.Errorf("after Undo: curl %s exit %d, want 0", url, code)
				}
			}
			if code := curlExit(t, b.NS, toA); code != 0 {
				t.Errorf("after Undo: curl %s from b exit %d, want 0", toA, code)
			}
		})
	}
}

// echoServer accepts on 127.0.0.1 and echoes until the test ends.
func echoServer(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

func TestPartitionOnHostLoopback(t *testing.T) {
	r := newRun(t)
	host, err := HostNS()
	if err != nil {
		t.Fatal(err)
	}
	me, err := PidNS(syscall.Getpid())
	if err != nil || !me.Same(host) {
		t.Skip("the test does not run in the host's namespace")
	}
	cut := echoServer(t, "tcp4", "127.0.0.1:0")
	kept := echoServer(t, "tcp4", "127.0.0.1:0")
	r.tables(host)
	if _, err := Inject(context.Background(), host, r.id, "all", Partition{To: []Dest{mustDest(t, "0.0.0.0/0")}}, r.journal); !errors.Is(err, ErrTooBroad) {
		t.Errorf("partition of the host from everything = %v, want ErrTooBroad", err)
	}
	for _, reject := range []bool{false, true} {
		op := r.inject(host, fmt.Sprintf("lo%v", reject), Partition{To: []Dest{mustDest(t, cut.Addr().String())}, Reject: reject})
		_, err := net.DialTimeout("tcp4", cut.Addr().String(), time.Second)
		var ne net.Error
		switch {
		case !reject && !(errors.As(err, &ne) && ne.Timeout()):
			t.Errorf("reject=false: dial %s = %v, want a timeout", cut.Addr(), err)
		case reject && !errors.Is(err, syscall.ECONNREFUSED):
			t.Errorf("reject=true: dial %s = %v, want connection refused", cut.Addr(), err)
		}
		// Other loopback traffic keeps working.
		c, err := net.DialTimeout("tcp4", kept.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s (not partitioned) = %v", kept.Addr(), err)
		}
		if err := roundTrip(c); err != nil {
			t.Errorf("echo through %s (not partitioned): %v", kept.Addr(), err)
		}
		c.Close()
		if err := Undo(context.Background(), op); err != nil {
			t.Fatal(err)
		}
		c, err = net.DialTimeout("tcp4", cut.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("after Undo: dial %s = %v", cut.Addr(), err)
		}
		c.Close()
	}
}

// roundTrip writes a line and reads it back within 5 s.
func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := ioReadFull(c, buf)
	return err
}
