package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// A panic in a connection's goroutine closes that connection and nothing
// else: the process, the proxy and its other connections go on, and the
// panic is counted and logged with its stack. The panic is made by a toxic
// that validation would refuse (a negative rate), set behind its back.
func TestPanicInTheDataPathClosesOnlyThatConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	var logged bytes.Buffer
	logw := &syncWriter{w: &logged}
	p := New(Config{Name: "p", Listen: "127.0.0.1:0", Upstream: ln.Addr().String(), Seed: 1,
		Logger: slog.New(slog.NewTextHandler(logw, nil))})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Listen())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	other := dial()
	defer other.Close()
	echo := func(c net.Conn, msg string) error {
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		_, err := io.ReadFull(c, got)
		return err
	}
	if err := echo(other, "before"); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.serial++
	p.toxics = append(p.toxics, newToxicEntry(Toxic{Name: "bad", Stream: Upstream, Effect: Bandwidth{Rate: -1}}, p.serial))
	p.rebuildLocked()
	p.mu.Unlock()

	victim := dial()
	defer victim.Close()
	if err := echo(victim, "x"); err == nil {
		t.Fatal("the connection whose toxic panicked still echoes")
	}
	if n := p.Panics(); n != 1 {
		t.Fatalf("Panics() = %d, want 1", n)
	}
	if err := p.RemoveToxic("bad"); err != nil {
		t.Fatal(err)
	}
	if err := echo(other, "after"); err != nil {
		t.Fatalf("another connection of the proxy: %v", err)
	}
	fresh := dial()
	defer fresh.Close()
	if err := echo(fresh, "new"); err != nil {
		t.Fatalf("a new connection: %v", err)
	}
	logw.mu.Lock()
	defer logw.mu.Unlock()
	if s := logged.String(); !strings.Contains(s, "panicked") || !strings.Contains(s, "bandwidth") {
		t.Errorf("the log does not tell of the panic and where: %q", s)
	}
}

// syncWriter is a writer safe for concurrent use, for logs read by tests.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
