package shop

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the driver "pgx"
	_ "modernc.org/sqlite"           // driver "sqlite"
)

// Order statuses. An order is pending while its checkout runs, paid when
// the card processor confirmed the charge, queued when the charge waits
// for the background worker, and lost when the charge failed and nothing
// will retry it.
const (
	StatusPending = "pending"
	StatusPaid    = "paid"
	StatusQueued  = "queued"
	StatusLost    = "lost"
)

// Product is one item of the catalogue.
type Product struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// Order is one order.
type Order struct {
	ID          int64  `json:"id"`
	ProductID   int64  `json:"product_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
	ChargeID    string `json:"charge_id,omitempty"`
}

// Stats counts orders by status.
type Stats struct {
	Created int64 `json:"created"`
	Paid    int64 `json:"paid"`
	Queued  int64 `json:"queued"`
	Pending int64 `json:"pending"`
	Lost    int64 `json:"lost"`
	// Unverified counts orders marked paid without a charge id from the
	// card processor: money the shop cannot prove it received.
	Unverified int64 `json:"unverified"`
}

// Store is the shop's database: PostgreSQL ("postgres://...") or SQLite
// ("sqlite:PATH").
type Store struct {
	db       *sql.DB
	postgres bool
}

// OpenStore opens the database at url. It does not connect yet.
func OpenStore(url string) (*Store, error) { return openStore(url, false) }

// openStore opens the database at url. With waitForSlot, a connection
// that PostgreSQL refuses for want of a free slot ("sorry, too many
// clients already") is tried again until it is granted or the caller's
// context ends: a pool with no acquire timeout, as the fragile build has.
func openStore(url string, waitForSlot bool) (*Store, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			return nil, err
		}
		connector := stdlib.GetConnector(*cfg)
		if waitForSlot {
			connector = &slotWaiter{Connector: connector, closed: make(chan struct{})}
		}
		return &Store{db: sql.OpenDB(connector), postgres: true}, nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			return nil, errors.New("sqlite: needs a file path, e.g. sqlite:/tmp/shop.db")
		}
		// Several processes share the file: WAL and a busy timeout let
		// them write in turn.
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
		if err != nil {
			return nil, err
		}
		return &Store{db: db}, nil
	}
	return nil, fmt.Errorf("database %q: want postgres://... or sqlite:PATH", url)
}

// tooManyConnections is PostgreSQL's SQLSTATE for "sorry, too many
// clients already".
const tooManyConnections = "53300"

// slotWaiter connects to PostgreSQL and, while the server has no free
// connection slot, waits and tries again, for as long as the caller lets
// it: the fragile build's requests carry no deadline, so they hang until
// a slot frees up. Closing the pool ends the wait.
type slotWaiter struct {
	driver.Connector
	closed    chan struct{}
	closeOnce sync.Once
}

func (w *slotWaiter) Connect(ctx context.Context) (driver.Conn, error) {
	for {
		c, err := w.Connector.Connect(ctx)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != tooManyConnections {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-w.closed:
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close is called by sql.DB.Close.
func (w *slotWaiter) Close() error {
	w.closeOnce.Do(func() { close(w.closed) })
	return nil
}

// DB is the underlying pool, for its limits.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// q turns ? placeholders into PostgreSQL's $N.
func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// catalogue is what Migrate puts in an empty products table.
var catalogue = []Product{
	{1, "espresso beans, 1 kg", 2400}, {2, "burr grinder", 12900}, {3, "pour-over kettle", 5900},
	{4, "paper filters (100)", 600}, {5, "ceramic dripper", 2500}, {6, "milk jug", 1900},
	{7, "scale, 0.1 g", 3900}, {8, "tamper", 2900}, {9, "cleaning tablets", 1100}, {10, "travel mug", 2200},
}

// Migrate creates the tables and the catalogue if missing. Instances that
// start together may all call it.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	id := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if s.postgres {
		id = "BIGSERIAL PRIMARY KEY"
		// CREATE TABLE IF NOT EXISTS races with itself in PostgreSQL.
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(7411)"); err != nil {
			return err
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7411)") //nolint:errcheck
	}
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS products (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price_cents BIGINT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS orders (id " + id + ", product_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, status TEXT NOT NULL, charge_id TEXT)",
		"CREATE INDEX IF NOT EXISTS orders_status ON orders (status)",
	}
	for _, p := range catalogue {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO products (id, name, price_cents) VALUES (%d, '%s', %d) ON CONFLICT (id) DO NOTHING", p.ID, p.Name, p.PriceCents))
	}
	for _, st := range stmts {
		if _, err := conn.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Products lists the catalogue.
func (s *Store) Products(ctx context.Context) ([]Product, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, name, price_cents FROM products ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Product
	for rows.Next() {
		var p Product
		if err := rows.Scan(&p.ID, &p.Name, &p.PriceCents); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CreateOrder writes a pending order for a product and returns it.
func (s *Store) CreateOrder(ctx context.Context, productID int64) (Order, error) {
	o := Order{ProductID: productID, Status: StatusPending}
	if err := s.db.QueryRowContext(ctx, s.q("SELECT price_cents FROM products WHERE id = ?"), productID).Scan(&o.AmountCents); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return o, ErrNoProduct
		}
		return o, err
	}
	err := s.db.QueryRowContext(ctx, s.q("INSERT INTO orders (product_id, amount_cents, status) VALUES (?, ?, ?) RETURNING id"),
		productID, o.AmountCents, StatusPending).Scan(&o.ID)
	return o, err
}

// ErrNoProduct is returned for an order of an unknown product.
var ErrNoProduct = errors.New("no such product")

// ErrNoOrder is returned for an unknown order.
var ErrNoOrder = errors.New("no such order")

// SetStatus changes an order's status.
func (s *Store) SetStatus(ctx context.Context, id int64, status string) error {
	_, err := s.db.ExecContext(ctx, s.q("UPDATE orders SET status = ? WHERE id = ?"), status, id)
	return err
}

// SetPaid marks an order paid with the card processor's charge id.
func (s *Store) SetPaid(ctx context.Context, id int64, chargeID string) error {
	_, err := s.db.ExecContext(ctx, s.q("UPDATE orders SET status = ?, charge_id = ? WHERE id = ?"), StatusPaid, chargeID, id)
	return err
}

// Order reads one order.
func (s *Store) Order(ctx context.Context, id int64) (Order, error) {
	o := Order{ID: id}
	var charge sql.NullString
	err := s.db.QueryRowContext(ctx, s.q("SELECT product_id, amount_cents, status, charge_id FROM orders WHERE id = ?"), id).
		Scan(&o.ProductID, &o.AmountCents, &o.Status, &charge)
	o.ChargeID = charge.String
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNoOrder
	}
	return o, err
}

// Queued lists up to limit orders waiting for their payment, oldest first.
func (s *Store) Queued(ctx context.Context, limit int) ([]Order, error) {
	rows, err := s.db.QueryContext(ctx, s.q("SELECT id, product_id, amount_cents FROM orders WHERE status = ? ORDER BY id LIMIT ?"), StatusQueued, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Order
	for rows.Next() {
		o := Order{Status: StatusQueued}
		if err := rows.Scan(&o.ID, &o.ProductID, &o.AmountCents); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Stats counts the orders by status.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	rows, err := s.db.QueryContext(ctx, "SELECT status, COUNT(*), SUM(CASE WHEN status = 'paid' AND (charge_id IS NULL OR charge_id = '') THEN 1 ELSE 0 END) FROM orders GROUP BY status")
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n, unverified int64
		if err := rows.Scan(&status, &n, &unverified); err != nil {
			return st, err
		}
		st.Created += n
		st.Unverified += unverified
		switch status {
		case StatusPaid:
			st.Paid = n
		case StatusQueued:
			st.Queued = n
		case StatusPending:
			st.Pending = n
		case StatusLost:
			st.Lost = n
		}
	}
	return st, rows.Err()
}

// withTimeout bounds ctx by d; d <= 0 leaves it unbounded (the fragile
// build).
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
