// Package proxy is faultline's fault-injection TCP proxy: the engine
// (Proxy, with typed toxics such as Latency and Bandwidth) and a Server
// that holds named proxies and serves an HTTP API wire-compatible with
// Toxiproxy 2.x, so Toxiproxy's clients and toxiproxy-cli drive it
// unchanged.
//
// In-process use, for example from a Go test:
//
//	p := proxy.New(proxy.Config{Name: "db", Listen: "127.0.0.1:0", Upstream: dbAddr})
//	if err := p.Start(); err != nil { ... }
//	defer p.Stop()
//	p.AddToxic(proxy.Toxic{Effect: proxy.Latency{Delay: 100 * time.Millisecond}})
//	// connect to p.Listen() instead of dbAddr
//
// Small reads are copied through a pooled buffer taken only while bytes
// are in flight; bulk already waiting in the socket goes kernel to kernel
// (splice), through toxics too when they pass it at once. A connection
// costs two goroutines whatever the number of its toxics. Toxics are added,
// changed and removed on live connections without losing, duplicating or
// reordering a byte. Unlike Toxiproxy, a half-close (shutdown of one
// direction) is passed through, invalid attribute values are refused
// instead of crashing the server, and a panic in a connection's goroutines
// closes that connection alone (see Proxy.Panics).
package proxy
