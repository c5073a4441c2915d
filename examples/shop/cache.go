package shop

import (
	"context"
	"fmt"
	"net"
	"os/exec"

	"github.com/alicebob/miniredis/v2"
)

// RedisServer returns the path of Debian's redis-server, or "" when it is
// not installed.
func RedisServer() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// RedisArgs are the arguments that run redis-server as the shop's cache:
// on listen, loopback only, nothing written to disk.
func RedisArgs(listen string) ([]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	return []string{"redis-server", "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}, nil
}

// RunEmbeddedCache serves the Redis protocol on listen from this process
// (miniredis) until ctx ends: the cache where redis-server is missing.
func RunEmbeddedCache(ctx context.Context, listen string) error {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(listen); err != nil {
		return fmt.Errorf("embedded cache on %s: %w", listen, err)
	}
	defer m.Close()
	<-ctx.Done()
	return nil
}
