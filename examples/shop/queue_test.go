package shop_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/process/processtest"
)

// queue is the shop's broker, run in the test's process on one address
// and store directory, so that it can be stopped and started again as a
// killed broker is restarted.
type queue struct {
	t      *testing.T
	addr   string
	store  string
	cancel context.CancelFunc
	done   chan error
}

func startQueue(t *testing.T) *queue {
	t.Helper()
	q := &queue{t: t, addr: freeAddr(t), store: t.TempDir()}
	q.start()
	t.Cleanup(q.stop)
	return q
}

func (q *queue) url() string { return "nats://" + q.addr }

func (q *queue) start() {
	q.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel, q.done = cancel, make(chan error, 1)
	go func() { q.done <- shop.RunQueue(ctx, shop.QueueConfig{Listen: q.addr, StoreDir: q.store}) }()
	// Ready once the stream answers.
	processtest.WaitFor(q.t, "the queue's stream", func() bool {
		nc, err := nats.Connect(q.url(), nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.Stream(ctx, "SHOP")
		return err == nil
	})
}

func (q *queue) stop() {
	if q.cancel == nil {
		return
	}
	q.cancel()
	if err := <-q.done; err != nil {
		q.t.Errorf("RunQueue: %v", err)
	}
	q.cancel = nil
}

// publish puts a message on the shop's stream as a client of its own.
func (q *queue) publish(subject, msgID string, v any) {
	q.t.Helper()
	nc, err := nats.Connect(q.url())
	if err != nil {
		q.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, subject, b, jetstream.WithMsgID(msgID)); err != nil {
		q.t.Fatal(err)
	}
}

// The resilient build with the broker down: orders go through (their
// announcements wait in the outbox, written with the order), and once the
// broker is back every order is announced exactly once, also with two
// instances relaying the same outbox and a duplicate delivered on purpose.
func TestOutboxNoneLostNoneTwice(t *testing.T) {
	for engine, db := range stores(t) {
		t.Run(engine, func(t *testing.T) {
			cache := startRedis(t)
			pay := newPayments(t)
			q := startQueue(t)
			cfg := shop.CheckoutConfig{Build: shop.Resilient, DB: db, Cache: cache, Payments: pay.srv.URL, Queue: q.url()}
			a := startCheckoutWith(t, cfg)
			b := startCheckoutWith(t, cfg)
			order := func(base string) {
				t.Helper()
				if code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 2}`); code != http.StatusCreated {
					t.Fatalf("checkout = %d %s; want 201", code, body)
				}
			}
			for range 3 {
				order(a)
			}
			processtest.WaitFor(t, "3 orders announced", func() bool { return stats(t, a).Announced == 3 })

			q.stop() // the broker dies
			for i := range 6 {
				order([]string{a, b}[i%2])
			}
			if st := stats(t, a); st.Outbox != 6 || st.Created != 9 || st.Paid != 9 {
				t.Fatalf("stats with the broker down: %+v; want 9 orders paid, 6 announcements in the outbox", st)
			}
			q.start() // and comes back, with its store
			processtest.WaitFor(t, "every order announced", func() bool {
				st := stats(t, a)
				return st.Announced == 9 && st.Outbox == 0 && st.Unannounced == 0
			})
			// A second delivery of an announcement (a lost acknowledgement,
			// a publisher that retried): counted, not acted on.
			q.publish("shop.orders", "again-1", shop.Order{ID: 1, ProductID: 2, AmountCents: 12900})
			processtest.WaitFor(t, "the duplicate seen", func() bool { return stats(t, a).Redelivered >= 1 })
			if st := stats(t, b); st.Announced != 9 || st.Created != 9 {
				t.Fatalf("after a duplicate: %+v; want 9 orders announced once each", st)
			}
			rows := countRows(t, db, "SELECT COUNT(*) FROM announcements WHERE order_id NOT IN (SELECT id FROM orders)")
			if rows != 0 {
				t.Fatalf("%d announcements of orders that do not exist", rows)
			}
		})
	}
}

func countRows(t *testing.T, db, query string) int {
	t.Helper()
	driver, dsn := "pgx", db
	if strings.HasPrefix(db, "sqlite:") {
		driver, dsn = "sqlite", strings.TrimPrefix(db, "sqlite:")
	}
	conn, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The fragile build announces each order before charging it and waits
// for the broker: with the broker down the checkout fails and the order
// is lost.
func TestFragileOrderFailsWithoutBroker(t *testing.T) {
	cache := startRedis(t)
	pay := newPayments(t)
	q := startQueue(t)
	base := startCheckoutWith(t, shop.CheckoutConfig{Build: shop.Fragile, DB: "sqlite:" + filepath.Join(t.TempDir(), "shop.db"),
		Cache: cache, Payments: pay.srv.URL, Queue: q.url()})
	if code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{}`); code != http.StatusCreated {
		t.Fatalf("checkout with the broker up = %d %s", code, body)
	}
	processtest.WaitFor(t, "the order announced", func() bool { return stats(t, base).Announced == 1 })
	q.stop()
	client := &http.Client{Timeout: 20 * time.Second}
	code, body := call(t, client, "POST", base+"/checkout", `{}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot announce it") {
		t.Fatalf("checkout with the broker down = %d %s; want 503 naming the announcement", code, body)
	}
	if st := stats(t, base); st.Lost != 1 || st.Paid != 1 {
		t.Fatalf("stats: %+v; want the second order lost, not charged", st)
	}
	_, pstats := call(t, http.DefaultClient, "GET", pay.srv.URL+"/stats", "")
	if !strings.Contains(pstats, `"charges":1`) {
		t.Fatalf("processor: %s; want the lost order never charged", pstats)
	}
}

// With a broker, the resilient build's queued payments travel through it:
// queued while the processor hangs, paid by the consumer once it answers,
// once each.
func TestQueuedPaymentsThroughTheBroker(t *testing.T) {
	cache := startRedis(t)
	pay := newPayments(t)
	q := startQueue(t)
	base := startCheckoutWith(t, shop.CheckoutConfig{Build: shop.Resilient, DB: "sqlite:" + filepath.Join(t.TempDir(), "shop.db"),
		Cache: cache, Payments: pay.srv.URL, Queue: q.url()})
	pay.slow()
	for i := range 4 {
		if code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 5}`); code != http.StatusAccepted {
			t.Fatalf("checkout %d with a hung processor = %d %s; want 202", i, code, body)
		}
	}
	pay.release()
	processtest.WaitFor(t, "the queued payments confirmed", func() bool {
		st := stats(t, base)
		return st.Queued == 0 && st.Paid == 4 && st.Outbox == 0
	})
	_, body := call(t, http.DefaultClient, "GET", pay.srv.URL+"/stats", "")
	if !strings.Contains(body, `"charges":4`) {
		t.Fatalf("processor charged other than once per order: %s", body)
	}
}

// The resilient build with a database that does not take the order (a
// writer holds its lock past the order's deadline): the broker takes the
// order under its key and the shopper gets a 202; once the database takes
// writes again the order is written, and paid, once, also when the broker
// delivers its intake twice.
func TestOrderTakenByTheBrokerWrittenOnce(t *testing.T) {
	cache := startRedis(t)
	pay := newPayments(t)
	q := startQueue(t)
	path := filepath.Join(t.TempDir(), "shop.db")
	base := startCheckoutWith(t, shop.CheckoutConfig{Build: shop.Resilient, DB: "sqlite:" + path,
		Cache: cache, Payments: pay.srv.URL, Queue: q.url()})
	lock, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	conn, err := lock.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil { // no other writer until ROLLBACK
		t.Fatal(err)
	}
	code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 2}`)
	var taken struct {
		Key    string `json:"intake_key"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &taken); code != http.StatusAccepted || err != nil || taken.Status != "accepted" || taken.Key == "" {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		t.Fatalf("checkout with the database locked = %d %s; want 202, accepted under a key", code, body)
	}
	if st := stats(t, base); st.Created != 0 {
		t.Errorf("stats with the database locked: %+v; want no order written yet", st)
	}
	// The same intake again, as a publisher that retried sends it.
	q.publish("shop.intake", "again-"+taken.Key, map[string]any{"intake_key": taken.Key, "product_id": 2, "status": "accepted"})
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	processtest.WaitFor(t, "the order written and paid", func() bool {
		st := stats(t, base)
		return st.Paid == 1 && st.Queued == 0 && st.Outbox == 0
	})
	// Every delivery handled: none left for the consumer to write twice.
	processtest.WaitFor(t, "the intake consumer done", func() bool {
		return countRows(t, "sqlite:"+path, "SELECT COUNT(*) FROM orders") == 1 && pendingIntake(t, q) == 0
	})
	if st := stats(t, base); st.Created != 1 || st.Paid != 1 {
		t.Fatalf("stats: %+v; want the order written once, paid once", st)
	}
	if n := countRows(t, "sqlite:"+path, "SELECT COUNT(*) FROM orders WHERE intake_key = '"+taken.Key+"'"); n != 1 {
		t.Fatalf("%d orders under the key, want 1", n)
	}
	_, pstats := call(t, http.DefaultClient, "GET", pay.srv.URL+"/stats", "")
	if !strings.Contains(pstats, `"charges":1`) {
		t.Fatalf("processor: %s; want the order charged once", pstats)
	}
}

// pendingIntake is how many intake messages the consumer has not yet
// acknowledged.
func pendingIntake(t *testing.T, q *queue) int {
	t.Helper()
	nc, err := nats.Connect(q.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, "SHOP", "intake")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.NumPending) + info.NumAckPending
}
