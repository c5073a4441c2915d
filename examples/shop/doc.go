// Package shop is the small e-commerce backend that faultline's demo and
// example experiments break on purpose. It comes in two builds:
//
//   - Fragile, the "before": no timeouts on outbound calls, payment charged
//     synchronously, cache errors fail the request, a database pool that
//     connects for every query and waits without limit for a free
//     connection, orders announced on the broker synchronously (no
//     broker, no order), rows read as if no column could be NULL, card
//     processor answers decoded as if their shape never changed, a
//     round-robin balancer without health checks.
//   - Resilient, the "after": a timeout on every outbound call, circuit
//     breakers (sony/gobreaker) and retries with exponential backoff and
//     jitter (cenkalti/backoff), cache → database fallback, payments queued
//     and confirmed by a background worker when the card processor is slow,
//     a warm, bounded database pool with connect and query timeouts (an
//     order it cannot write in time is taken by the broker under a key and
//     written once when the database answers; a 503 with Retry-After when
//     there is no broker to take it), an outbox written
//     in the order's transaction and relayed to the broker when it is there
//     (consumers idempotent: none lost, none twice), a NULL price read as
//     "not for sale", processor answers validated field by field, and a
//     balancer with active health checks that retries on another instance.
//
// Its parts are a checkout API (Checkout), a card processor (Payments), a
// balancer (Balancer), a cache server (Debian's redis-server when
// installed, else RunEmbeddedCache, a Redis-protocol server), a message broker
// (RunQueue: a NATS server with JetStream, from its Go module) and a
// PostgreSQL server in a temporary directory (StartPostgres). The store is PostgreSQL,
// or SQLite through a pure-Go driver where PostgreSQL is missing. Every part
// runs from the faultline binary ('faultline shop ...'), so the demo needs
// no build step.
//
// Why NATS for the broker: its server is a Go module, so it runs from the
// faultline binary in a process of its own with no container or package to
// install; JetStream gives durable streams with message-id deduplication,
// which the outbox relay leans on (a message sent twice is stored once); and
// its client reconnects on its own, so a broker that comes back is used again
// without code in the shop. It costs the binary about 16 MB.
package shop

import "fmt"

// Build is the shop's build: Fragile or Resilient.
type Build string

// The two builds.
const (
	Fragile   Build = "fragile"
	Resilient Build = "resilient"
)

// ParseBuild checks a build name.
func ParseBuild(s string) (Build, error) {
	switch Build(s) {
	case Fragile, Resilient:
		return Build(s), nil
	}
	return "", fmt.Errorf("unknown build %q: want fragile or resilient", s)
}
