package shop

import (
	"context"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"
)

// Timeouts and limits of the resilient build. The fragile build has none
// of these: its outbound calls wait as long as the other side takes.
const (
	cacheTimeout   = 100 * time.Millisecond
	dbTimeout      = 500 * time.Millisecond // story(db-primary-down): every query's timeout
	dbReadBudget   = 900 * time.Millisecond // all attempts of a read together
	payTimeout     = time.Second
	healthTimeout  = 300 * time.Millisecond
	workerInterval = 250 * time.Millisecond
)

// newBreaker returns a circuit breaker that opens after trips consecutive
// failures and lets one trial call through after open.
func newBreaker[T any](name string, trips uint32, open time.Duration, log *slog.Logger, onState func(gobreaker.State)) *gobreaker.CircuitBreaker[T] {
	return gobreaker.NewCircuitBreaker[T](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     open,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trips },
		OnStateChange: func(name string, from, to gobreaker.State) {
			log.Info("circuit breaker", "breaker", name, "from", from.String(), "to", to.String())
			if onState != nil {
				onState(to)
			}
		},
	})
}

// newBackOff is exponential backoff with jitter (±50 %), starting at
// initial and capped at max.
func newBackOff(initial, max time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initial
	b.MaxInterval = max
	b.RandomizationFactor = 0.5
	b.Multiplier = 2
	b.Reset()
	return b
}

// retryRead runs a read against the database with a timeout per attempt,
// retried with backoff within dbReadBudget. Only reads are retried: a
// write that timed out may still have happened.
func retryRead[T any](ctx context.Context, read func(context.Context) (T, error)) (T, error) { // story(db-primary-down): reads retried with backoff
	return backoff.Retry(ctx, func() (T, error) {
		c, cancel := context.WithTimeout(ctx, dbTimeout)
		defer cancel()
		v, err := read(c)
		if err != nil && permanent(err) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(newBackOff(50*time.Millisecond, 400*time.Millisecond)), backoff.WithMaxElapsedTime(dbReadBudget))
}

// permanent reports errors that no retry changes.
func permanent(err error) bool { return err == ErrNoProduct || err == ErrNoOrder }
