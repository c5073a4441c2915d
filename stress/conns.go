package stress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
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
// ready is called once they are open; one that fails to open is an error
// only when none opens.
func Connections(ctx context.Context, cfg ConnConfig, ready func()) (Result, error) {
	if cfg.Count < 1 {
		return Result{}, errors.New("connections: want a count >= 1")
	}
	start := time.Now()
	var closers []func()
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for range cfg.Count {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			closer, err := open(ctx, cfg)
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
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if len(closers) == 0 {
		return Result{Kind: "connections"}, fmt.Errorf("connections: none opened: %w", firstErr)
	}
	res := Result{Kind: "connections", Conns: len(closers)}
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	res.Held = time.Since(start).Seconds()
	return res, nil
}

func open(ctx context.Context, cfg ConnConfig) (func(), error) {
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
