package stress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// ConnConfig says which connections to hold.
type ConnConfig struct {
	Address string // HOST:PORT (protocol tcp)
	Count   int
	// Mode "idle" sends nothing; "slow" sends an HTTP request one byte a
	// second and never finishes it.
	Mode string
	// Protocol "tcp" (default) or "postgres": authenticated sessions on
	// DSN, which is what counts against max_connections.
	Protocol string
	DSN      string
}

// Connections opens cfg.Count connections and holds them until ctx ends.
// ready is called once the first attempt at each is over; one that fails
// to open is an error only when none opens. While fewer than cfg.Count are
// held, it keeps trying to open the rest (every 10 ms at first, backing
// off to 100 ms): a slot that another client held for a moment when the
// stress began, and gave back, is taken too, and a TCP connection the
// server closes is opened again. Result.Conns is the most held at once.
func Connections(ctx context.Context, cfg ConnConfig, ready func()) (Result, error) {
	if cfg.Count < 1 {
		return Result{}, errors.New("connections: want a count >= 1")
	}
	start := time.Now()
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var lost atomic.Int64 // connections the server closed
	changed := make(chan struct{}, 1)
	onLost := func() {
		lost.Add(1)
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	held := func() int { return len(closers) - int(lost.Load()) }
	opened, firstErr := openMany(ctx, cfg, cfg.Count, onLost)
	closers = append(closers, opened...)
	if len(closers) == 0 {
		return Result{Kind: "connections"}, fmt.Errorf("connections: none opened: %w", firstErr)
	}
	res := Result{Kind: "connections", Conns: held()}
	if ready != nil {
		ready()
	}
	wait := 10 * time.Millisecond
	lostSeen := lost.Load()
	for ctx.Err() == nil {
		if held() >= cfg.Count {
			select { // until one is lost
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			more, _ := openMany(ctx, cfg, cfg.Count-held(), onLost)
			closers = append(closers, more...)
			res.Conns = max(res.Conns, held())
			// A connection the server closes is seen lost only once its
			// reader has read the end, which may be after this round:
			// every loss since the last round counts against this one.
			now := lost.Load()
			if len(more) > 0 && now == lostSeen {
				wait = 10 * time.Millisecond
			} else {
				// Nothing opened, or the server closes what opens: back off,
				// up to a second, rather than hammer it.
				wait = min(2*wait, time.Second)
			}
			lostSeen = now
		}
	}
	res.Held = time.Since(start).Seconds()
	return res, nil
}

// openMany opens up to n connections, 16 at a time, and returns the
// closers of those that opened and the first error. onLost is called when
// the server closes one.
func openMany(ctx context.Context, cfg ConnConfig, n int, onLost func()) ([]func(), error) {
	var closers []func()
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			closer, err := open(ctx, cfg, onLost)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			closers = append(closers, closer)
		})
	}
	wg.Wait()
	return closers, firstErr
}

func open(ctx context.Context, cfg ConnConfig, onLost func()) (func(), error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if cfg.Protocol == "postgres" {
		c, err := pgx.Connect(dctx, cfg.DSN)
		if err != nil {
			return nil, err
		}
		return func() { _ = c.Close(context.Background()) }, nil
	}
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", cfg.Address)
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	go func() {
		// What the server sends is dropped; its close is a lost slot
		// (ours, when the stress ends, is not), and our end is closed.
		_, _ = io.Copy(io.Discard, c)
		select {
		case <-stop:
		default:
			_ = c.Close()
			onLost()
		}
	}()
	if cfg.Mode == "slow" {
		go func() {
			// A request that never ends: its head, then a header value
			// that grows a byte a second.
			req := "GET / HTTP/1.1\r\nHost: " + cfg.Address + "\r\nX-Slow: "
			for i := 0; ; i++ {
				b := byte('x')
				if i < len(req) {
					b = req[i]
				}
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
	}
	return func() { close(stop); _ = c.Close() }, nil
}
