package load

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis is one command to a Redis server, through go-redis, on a pool of
// connections opened for the run (one pool for all Requests with the same
// server, user, password and database). An error reply counts as an
// error, a nil reply does not; so do a connection that cannot be made and
// the timeout. go-redis neither retries a command nor a dial here: a
// retry would hide the fault under test. Its Result's Code is 0.
type Redis struct {
	// Addr is HOST:PORT.
	Addr     string
	Username string
	Password string
	DB       int
	// Command is the command and its arguments: {"GET", "k"}, {"SET", "k", "v"}.
	Command []string
}

type redisKey struct {
	addr, username, password string
	db                       int
}

type redisClient struct{ c *redis.Client }

type redisDoer struct {
	c    *redis.Client
	args []any
}

func (ds *doers) redisDoer(r *Redis, timeout time.Duration) (doer, error) {
	var errs []error
	if err := checkAddr("redis.addr", r.Addr); err != nil {
		errs = append(errs, err)
	}
	if len(r.Command) == 0 || r.Command[0] == "" {
		errs = append(errs, errors.New("redis.command: empty, want a command and its arguments"))
	}
	if r.DB < 0 {
		errs = append(errs, fmt.Errorf("redis.db: must be >= 0, got %d", r.DB))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	key := redisKey{r.Addr, r.Username, r.Password, r.DB}
	rc := ds.redis[key]
	if rc == nil {
		rc = &redisClient{c: redis.NewClient(&redis.Options{
			Addr:     r.Addr,
			Username: r.Username,
			Password: r.Password,
			DB:       r.DB,
			Protocol: 2,
			// Each request's deadline bounds it, dial and pool wait included.
			ContextTimeoutEnabled: true,
			DialTimeout:           timeout,
			ReadTimeout:           timeout,
			WriteTimeout:          timeout,
			PoolTimeout:           timeout,
			MaxRetries:            -1,
			DialerRetries:         1,
			DisableIdentity:       true,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
		})}
		ds.redis[key] = rc
		ds.closers = append(ds.closers, func() { _ = rc.c.Close() })
	}
	d := &redisDoer{c: rc.c}
	for _, a := range r.Command {
		d.args = append(d.args, a)
	}
	return d, nil
}

func (d *redisDoer) do(deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := d.c.Do(ctx, d.args...).Err()
	if err == nil || errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if _, ok := errors.AsType[redis.Error](err); ok {
		return 0, fmt.Errorf("error reply: %w", err)
	}
	return 0, err
}
