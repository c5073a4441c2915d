package load

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SQL is one query (or statement) to PostgreSQL, through pgx, on a pool
// opened for the run (one pool for all Requests with the same DSN and
// MaxConns). It fails when the query does (an error from the server, a
// connection that cannot be had, the timeout); the rows are read to the
// end and dropped. Its Result's Code is 0.
type SQL struct {
	// DSN is a PostgreSQL connection string, a URL or key=value pairs, as
	// pgx takes it.
	DSN   string
	Query string
	Args  []any
	// MaxConns bounds the pool; zero means pgxpool's own default (the
	// DSN's pool_max_conns, else the larger of 4 and the number of CPUs).
	// Past it a request waits for a connection, as an application's would,
	// and the wait counts in its latency.
	MaxConns int32
}

type sqlKey struct {
	dsn      string
	maxConns int32
}

type sqlPool struct{ p *pgxpool.Pool }

type sqlDoer struct {
	p     *pgxpool.Pool
	query string
	args  []any
}

func (ds *doers) sqlDoer(r *SQL) (doer, error) {
	var errs []error
	if r.Query == "" {
		errs = append(errs, errors.New("sql.query: empty"))
	}
	if r.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("sql.max_conns: must be >= 0, got %d", r.MaxConns))
	}
	cfg, err := pgxpool.ParseConfig(r.DSN)
	if err != nil {
		errs = append(errs, fmt.Errorf("sql.dsn: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	key := sqlKey{r.DSN, r.MaxConns}
	sp := ds.sql[key]
	if sp == nil {
		if r.MaxConns > 0 {
			cfg.MaxConns = r.MaxConns
		}
		p, err := pgxpool.NewWithConfig(context.Background(), cfg) // connects lazily
		if err != nil {
			return nil, fmt.Errorf("sql: %w", err)
		}
		sp = &sqlPool{p: p}
		ds.sql[key] = sp
		ds.closers = append(ds.closers, p.Close)
	}
	return &sqlDoer{p: sp.p, query: r.Query, args: r.Args}, nil
}

func (d *sqlDoer) do(deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	rows, err := d.p.Query(ctx, d.query, d.args...)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
	}
	rows.Close()
	return 0, rows.Err()
}
