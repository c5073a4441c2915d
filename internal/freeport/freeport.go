// Package freeport hands out loopback ports for servers that other
// processes will bind later.
//
// A port from net.Listen("127.0.0.1:0") is in the kernel's ephemeral
// range, which it also uses for the local end of every outgoing
// connection: between closing the probe and the server binding it, a busy
// machine's next connect() can take it. Ports below that range are never
// handed out by the kernel, so one that is free now stays free unless
// someone asks for it by number.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowest+1000 {
				return n
			}
		}
	}
	return 32768
}

// Get returns a loopback TCP port that is free now, below the ephemeral
// range, and not returned before by this process.
func Get() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	top := ephemeralStart()
	for range 200 {
		p := lowest + rand.IntN(top-lowest)
		if given[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		given[p] = true
		return p, nil
	}
	// The low range is crowded: take one from the kernel.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
