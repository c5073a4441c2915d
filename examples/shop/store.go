package shop

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
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

// Product is one item of the catalogue. A product whose price is not set
// yet (NULL in the database) has PriceCents nil and is not for sale.
type Product struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	PriceCents *int64 `json:"price_cents"`
	ForSale    bool   `json:"for_sale"`
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
	// Announced counts orders whose announcement (confirmation e-mail,
	// stock) the broker delivered; Unannounced, orders not lost and older
	// than announceGrace that have none yet (meaningful with a broker);
	// Redelivered, deliveries of an announcement after its first, which
	// the consumer ignored; Outbox, messages waiting for the broker.
	Announced   int64 `json:"announced"`
	Unannounced int64 `json:"unannounced"`
	Redelivered int64 `json:"redelivered"`
	Outbox      int64 `json:"outbox"`
}

// announceGrace is how old an order may be before Stats counts it
// unannounced: an announcement under way is not a lost one.
const announceGrace = 3 * time.Second

// Store is the shop's database: PostgreSQL ("postgres://...") or SQLite
// ("sqlite:PATH").
type Store struct {
	db       *sql.DB
	postgres bool
	// nullable: a NULL where a value belongs (a product's price) is read
	// as missing, not as an error. The resilient build's store.
	nullable bool
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
			connector = &slotWaiter{Connector: connector, closed: make(chan struct{})} // story(db-pool-exhausted): waits for a free slot without limit
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
var catalogue = []struct {
	ID         int64
	Name       string
	PriceCents int64
}{
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
		// A product's price may be NULL: added to the catalogue, not priced yet.
		"CREATE TABLE IF NOT EXISTS products (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price_cents BIGINT)",
		// intake_key: the key the order was taken under, which the broker
		// carries when the database did not take the order in time.
		"CREATE TABLE IF NOT EXISTS orders (id " + id + ", product_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, status TEXT NOT NULL, charge_id TEXT, created_ms BIGINT NOT NULL DEFAULT 0, intake_key TEXT)",
		"CREATE INDEX IF NOT EXISTS orders_status ON orders (status)",
		"CREATE UNIQUE INDEX IF NOT EXISTS orders_intake_key ON orders (intake_key)",
		// Messages for the broker, written in the transaction of what they
		// announce, deleted once the broker has them.
		"CREATE TABLE IF NOT EXISTS outbox (id " + id + ", subject TEXT NOT NULL, msg_id TEXT NOT NULL, payload TEXT NOT NULL)",
		// What the announcement consumer has handled, one row an order.
		"CREATE TABLE IF NOT EXISTS announcements (order_id BIGINT PRIMARY KEY, deliveries BIGINT NOT NULL)",
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
		p, err := s.scanProduct(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Product reads one product.
func (s *Store) Product(ctx context.Context, id int64) (Product, error) {
	p, err := s.scanProduct(s.db.QueryRowContext(ctx, s.q("SELECT id, name, price_cents FROM products WHERE id = ?"), id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNoProduct
	}
	return p, err
}

// scanProduct reads a row of id, name, price_cents.
func (s *Store) scanProduct(scan func(...any) error) (Product, error) {
	var p Product
	if !s.nullable {
		var price int64
		err := scan(&p.ID, &p.Name, &price) // story(db-nulls): a plain int64, as if no price could be NULL
		p.PriceCents, p.ForSale = &price, err == nil
		return p, err
	}
	var price sql.NullInt64 // story(db-nulls): a NULL price is read as missing
	if err := scan(&p.ID, &p.Name, &price); err != nil {
		return p, err
	}
	if price.Valid {
		p.PriceCents, p.ForSale = &price.Int64, true
	}
	return p, nil
}

// CreateOrder writes a pending order for a product and returns it. With
// announce, the order's announcement goes in the outbox in the same
// transaction: both are written, or neither.
func (s *Store) CreateOrder(ctx context.Context, productID int64, announce bool, key string) (Order, error) {
	o := Order{ProductID: productID, Status: StatusPending}
	p, err := s.Product(ctx, productID)
	switch {
	case err != nil:
		return o, err
	case !p.ForSale:
		return o, ErrNotForSale
	}
	o.AmountCents = *p.PriceCents
	err = s.inTx(ctx, announce, func(tx querier) error {
		err := tx.QueryRowContext(ctx, s.q("INSERT INTO orders (product_id, amount_cents, status, created_ms, intake_key) VALUES (?, ?, ?, ?, ?) RETURNING id"),
			productID, o.AmountCents, StatusPending, time.Now().UnixMilli(), nullString(key)).Scan(&o.ID)
		if err != nil || !announce {
			return err
		}
		return s.addOutbox(ctx, tx, subjectOrders, "order-"+strconv.FormatInt(o.ID, 10), o) // story(queue-down): the outbox row, in the order's transaction
	})
	return o, err
}

// CreateOrderOnce makes the order taken under key, unless it was made
// already (the first attempt reached the database after all, or the broker
// delivers the same intake twice), and returns it either way.
func (s *Store) CreateOrderOnce(ctx context.Context, key string, productID int64, announce bool) (Order, error) {
	o, err := s.orderByKey(ctx, key)
	if !errors.Is(err, ErrNoOrder) {
		return o, err
	}
	o, err = s.CreateOrder(ctx, productID, announce, key)
	if err != nil {
		// Made meanwhile under the same key (another instance, a
		// redelivery): the unique index refused this one.
		if made, err2 := s.orderByKey(ctx, key); err2 == nil {
			return made, nil
		}
	}
	return o, err
}

func (s *Store) orderByKey(ctx context.Context, key string) (Order, error) {
	var o Order
	var charge sql.NullString
	err := s.db.QueryRowContext(ctx, s.q("SELECT id, product_id, amount_cents, status, charge_id FROM orders WHERE intake_key = ?"), key).
		Scan(&o.ID, &o.ProductID, &o.AmountCents, &o.Status, &charge)
	o.ChargeID = charge.String
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNoOrder
	}
	return o, err
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs f in a transaction when tx is true, else straight on the pool.
func (s *Store) inTx(ctx context.Context, tx bool, f func(querier) error) error {
	if !tx {
		return f(s.db)
	}
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(t); err != nil {
		_ = t.Rollback()
		return err
	}
	return t.Commit()
}

func (s *Store) addOutbox(ctx context.Context, q querier, subject, msgID string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, s.q("INSERT INTO outbox (subject, msg_id, payload) VALUES (?, ?, ?)"), subject, msgID, string(b))
	return err
}

// ErrNoProduct is returned for an order of an unknown product.
var ErrNoProduct = errors.New("no such product")

// ErrNotForSale is returned for an order of a product that has no price.
var ErrNotForSale = errors.New("not for sale: the product has no price")

// ErrNoOrder is returned for an unknown order.
var ErrNoOrder = errors.New("no such order")

// SetStatus changes an order's status.
func (s *Store) SetStatus(ctx context.Context, id int64, status string) error {
	_, err := s.db.ExecContext(ctx, s.q("UPDATE orders SET status = ? WHERE id = ?"), status, id)
	return err
}

// QueuePayment marks an order's payment queued and, in the same
// transaction, puts the payment in the outbox for the broker.
func (s *Store) QueuePayment(ctx context.Context, o Order) error {
	return s.inTx(ctx, true, func(tx querier) error {
		if _, err := tx.ExecContext(ctx, s.q("UPDATE orders SET status = ? WHERE id = ?"), StatusQueued, o.ID); err != nil {
			return err
		}
		o.Status = StatusQueued
		return s.addOutbox(ctx, tx, subjectPayments, "pay-"+strconv.FormatInt(o.ID, 10), o)
	})
}

// OutboxMsg is a message waiting in the outbox.
type OutboxMsg struct {
	ID      int64
	Subject string
	MsgID   string
	Payload []byte
}

// Outbox lists up to limit messages waiting for the broker, oldest first.
func (s *Store) Outbox(ctx context.Context, limit int) ([]OutboxMsg, error) {
	rows, err := s.db.QueryContext(ctx, s.q("SELECT id, subject, msg_id, payload FROM outbox ORDER BY id LIMIT ?"), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxMsg
	for rows.Next() {
		var m OutboxMsg
		var payload string
		if err := rows.Scan(&m.ID, &m.Subject, &m.MsgID, &payload); err != nil {
			return nil, err
		}
		m.Payload = []byte(payload)
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteOutbox removes a message the broker has (a no-op when another
// instance removed it first).
func (s *Store) DeleteOutbox(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, s.q("DELETE FROM outbox WHERE id = ?"), id)
	return err
}

// RecordAnnouncement notes a delivery of an order's announcement; first
// is true for the first one, the only one acted on: a redelivery (the
// broker never got the acknowledgement, or the outbox published it twice)
// is counted and otherwise ignored.
func (s *Store) RecordAnnouncement(ctx context.Context, orderID int64) (first bool, err error) {
	var n int64
	err = s.db.QueryRowContext(ctx, s.q("INSERT INTO announcements (order_id, deliveries) VALUES (?, 1) "+
		"ON CONFLICT (order_id) DO UPDATE SET deliveries = announcements.deliveries + 1 RETURNING deliveries"), orderID).Scan(&n)
	return n == 1, err
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
	if err := rows.Err(); err != nil {
		return st, err
	}
	err = s.db.QueryRowContext(ctx, s.q(`SELECT
		(SELECT COUNT(*) FROM announcements),
		(SELECT COUNT(*) FROM orders o WHERE o.status <> 'lost' AND o.created_ms < ?
			AND NOT EXISTS (SELECT 1 FROM announcements a WHERE a.order_id = o.id)),
		(SELECT COALESCE(SUM(deliveries - 1), 0) FROM announcements),
		(SELECT COUNT(*) FROM outbox)`), time.Now().Add(-announceGrace).UnixMilli()).
		Scan(&st.Announced, &st.Unannounced, &st.Redelivered, &st.Outbox)
	return st, err
}

// withTimeout bounds ctx by d; d <= 0 leaves it unbounded (the fragile
// build).
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
