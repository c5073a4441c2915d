package proxy_test

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/faultline/faultline/proxy"
)

// A proxy in front of a service, in-process, with a latency toxic on the
// replies.
func Example() {
	// A service that echoes what it gets.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()

	p := proxy.New(proxy.Config{Name: "echo", Listen: "127.0.0.1:0", Upstream: ln.Addr().String()})
	if err := p.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer p.Stop()
	t, _ := p.AddToxic(proxy.Toxic{Effect: proxy.Latency{Delay: 50 * time.Millisecond}})
	fmt.Println("added", t.Name)

	c, _ := net.Dial("tcp", p.Listen()) // the client talks to the proxy
	defer c.Close()
	start := time.Now()
	_, _ = c.Write([]byte("ping"))
	reply := make([]byte, 4)
	_, _ = io.ReadFull(c, reply)
	fmt.Printf("%s after at least 50ms: %v\n", reply, time.Since(start) >= 50*time.Millisecond)
	// Output:
	// added latency_downstream
	// ping after at least 50ms: true
}
