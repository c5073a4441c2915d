// Package load drives traffic at a constant rate (an open model: a slow
// system cannot slow the load down and hide its own latency) and measures
// it in HDR histograms: HTTP requests, and TCP connections, Redis
// commands, PostgreSQL queries, DNS queries and gRPC calls. Any Go program
// can use it; it knows nothing of experiments.
//
// Request n of a run is due n/rate after its start; a pool of workers of
// its own sends each when due, and latency is taken from that due time, so
// queueing in the load generator counts against the system (no
// coordinated omission). The pool grows only while more workers raise the
// rate: on few cores, workers past that only cost each request more.
// Every kind has the same open model, the same per-request timeout (from
// when it is sent) and the same Result; connections and pools are opened
// once per run and closed when Run returns.
//
// HTTP requests go out on kept-alive connections of a small transport of
// this package, as bytes rendered once by net/http's request writer; a
// simple answer is read in place, any other by net/http's response reader
// (net/http's own Transport and Client cost the load generator about
// twice the CPU per request: see bench/results/load.md). On Linux, a run
// whose every request is plain HTTP to an IP address (no TLS, no name to
// resolve) has no goroutine a worker: its workers are slots of event
// loops of the engine's own, one for every two cores, each waiting for all its
// connections in one epoll_wait, as wrk does; the open model, the
// timeout, the one retry on a closed kept-alive connection and the
// answers read are the same.
//
// # Kinds, as an experiment file would give them
//
// A request is a string ("GET http://host:port/path") or a mapping with
// name and weight and the keys of one kind (a kind's mapping beside
// method, url, headers or body is refused):
//
//	kind   keys                                          counts as an error
//	http   method (GET), url, headers, body              no answer (refused, reset, cut short, timeout),
//	                                                     a 5xx status; Code is the status
//	tcp    tcp: {addr, send, expect | expect_regexp}     no connection, a failed write, a reply that does
//	                                                     not begin with expect (or match expect_regexp
//	                                                     within 64 KiB) before the server closes, timeout;
//	                                                     a connection a request, closed after it; Code 0
//	redis  redis: {addr, command: [GET, k], db,          an error reply (ERR, WRONGTYPE, ...), no
//	        username, password}                          connection, timeout; a nil reply is no error;
//	                                                     no retries; Code 0
//	sql    sql: {dsn, query, args: [...], max_conns}     the query fails (an error from PostgreSQL, no
//	                                                     connection, timeout); rows are read and dropped;
//	                                                     Code 0
//	dns    dns: {server, name, type (A), net (udp|tcp),  SERVFAIL, REFUSED, any RCODE but NOERROR and
//	        expect_answer (false)}                       NXDOMAIN, no answer in time; with expect_answer
//	                                                     also NXDOMAIN and an answer without a record of
//	                                                     the type; Code is the RCODE, -1 without answer
//	grpc   grpc: {target, service} (health check)        a status other than OK, a health check not
//	       grpc: {target, method: /pkg.Svc/M, body}      SERVING (NOT_SERVING: Code 0), timeout
//	                                                     (DEADLINE_EXCEEDED); plaintext; Code is the
//	                                                     gRPC status code
//
// Err says why a request failed and is empty when it did not; a timeout of
// any kind reads "timeout after D: context deadline exceeded". For HTTP,
// Result.Failed decides by Code alone (0 or >= 500), for the other kinds
// by Err. A gRPC body is the request message in protobuf's wire format (a
// file would give it in base64); a method is called without stubs and its
// answer is not decoded.
package load
