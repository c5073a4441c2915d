package shop

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// CheckoutConfig configures one checkout API instance.
type CheckoutConfig struct {
	Listen   string // HOST:PORT
	Build    Build
	DB       string // postgres://... or sqlite:PATH
	Cache    string // the Redis server, HOST:PORT
	Payments string // the card processor's base URL
	// Queue, if set, is the message broker (nats://HOST:PORT, 'faultline
	// shop queue'): orders are announced on it and, in the resilient
	// build, queued payments travel through it. Without it orders are not
	// announced and the resilient build's payment worker polls the
	// database for queued payments.
	Queue string
	Zone  string // reported by /health
	// Resolver, if set, is the DNS server (HOST:PORT) used to look up the
	// card processor's name; else the system's.
	Resolver string
	// LogDir, if set, gets an access log, a line per request. The fragile
	// build fails the request when the line cannot be written (a full
	// disk); the resilient one drops the line and counts it.
	LogDir string
	// Workers is how many requests are served at once, like a server's
	// thread pool (default 16). Requests beyond it wait for a worker.
	Workers int
	Logger  *slog.Logger
}

// Checkout is the checkout API: GET /products, POST /checkout,
// GET /orders/{id}, GET /stats, GET /health, GET /metrics.
type Checkout struct {
	cfg       CheckoutConfig
	log       *slog.Logger
	store     *Store
	cache     *redis.Client
	pay       *http.Client
	broker    *broker // nil without a queue
	cacheCB   *gobreaker.CircuitBreaker[[]byte]
	payCB     *gobreaker.CircuitBreaker[string]
	slots     chan struct{}
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	payments  *prometheus.CounterVec
	breakers  *prometheus.GaugeVec
	closeOnce sync.Once
	logMu     sync.Mutex
	logFile   *os.File
	dropped   atomic.Int64
	droppedC  prometheus.Counter
}

const productsKey = "shop:products"

// NewCheckout prepares an instance; Run serves it.
func NewCheckout(cfg CheckoutConfig) (*Checkout, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := ParseBuild(string(cfg.Build)); err != nil {
		return nil, err
	}
	dbURL := cfg.DB
	if cfg.Build == Resilient && strings.HasPrefix(dbURL, "postgres") && !strings.Contains(dbURL, "connect_timeout") {
		dbURL += sep(dbURL) + "connect_timeout=1" // story(db-primary-down, db-pool-exhausted): connecting gives up after 1 s
	}
	store, err := openStore(dbURL, cfg.Build == Fragile)
	if err != nil {
		return nil, err
	}
	c := &Checkout{cfg: cfg, log: cfg.Logger, store: store, slots: make(chan struct{}, cfg.Workers), reg: prometheus.NewRegistry()}
	ropts := &redis.Options{Addr: cfg.Cache, Protocol: 2, DisableIdentity: true}
	if cfg.Build == Resilient {
		store.DB().SetMaxOpenConns(20)
		ropts.DialTimeout, ropts.ReadTimeout, ropts.WriteTimeout = cacheTimeout, cacheTimeout, cacheTimeout
		ropts.MaxRetries = -1                                                            // the breaker decides, not a hidden retry loop
		c.pay = &http.Client{Timeout: payTimeout, Transport: payTransport(cfg.Resolver)} // story(slow-payment, cpu-spike, service-unreachable): a charge gets 1 s
	} else {
		// The pool of a first version: no idle connection kept (every
		// query connects anew) and no acquire timeout (when the database
		// has no free slot, the query waits for one, however long).
		store.DB().SetMaxOpenConns(10)
		store.DB().SetMaxIdleConns(0)                  // story(db-pool-exhausted, db-packet-loss): every query connects anew
		ropts.ReadTimeout, ropts.WriteTimeout = -1, -1 // story(cache-dies): no timeouts on the cache: the "before"
		ropts.MaxRetries = -1
		c.pay = &http.Client{Transport: payTransport(cfg.Resolver)} // story(slow-payment, cpu-spike, service-unreachable): no timeout on the card processor
	}
	redis.SetLogger(quietRedis{}) // its dial errors reach us as errors, and /health names them
	c.cache = redis.NewClient(ropts)
	store.nullable = cfg.Build == Resilient
	if cfg.Queue != "" {
		if c.broker, err = dialBroker(cfg.Queue, c.log); err != nil {
			_ = store.Close()
			return nil, err
		}
	}
	c.metrics()
	c.cacheCB = newBreaker[[]byte]("cache", 3, time.Second, c.log, func(s gobreaker.State) { c.breakers.WithLabelValues("cache").Set(float64(s)) })
	c.payCB = newBreaker[string]("payments", 3, 2*time.Second, c.log, func(s gobreaker.State) { c.breakers.WithLabelValues("payments").Set(float64(s)) })
	return c, nil
}

// payTransport is the card processor's client transport: a connection per
// charge (the processor closes idle connections), so that every charge
// looks its name up, through resolver when given.
func payTransport(resolver string) *http.Transport {
	d := &net.Dialer{}
	if resolver != "" {
		d.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var rd net.Dialer
			return rd.DialContext(ctx, network, resolver)
		}}
	}
	return &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true} // story(dns-fails): every charge looks the name up
}

// quietRedis drops the Redis client's own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func sep(url string) string {
	if strings.Contains(url, "?") {
		return "&"
	}
	return "?"
}

func (c *Checkout) metrics() {
	c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shop_requests_total", Help: "Requests served, by route and status code."}, []string{"route", "code"})
	c.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shop_request_duration_seconds", Help: "Time to serve a request, waiting for a worker included.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"route"})
	c.payments = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shop_payments_total", Help: "Checkout payments by outcome: paid, queued, lost."}, []string{"outcome"})
	c.breakers = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shop_circuit_breaker_state", Help: "0 closed, 1 half-open, 2 open."}, []string{"breaker"})
	c.droppedC = prometheus.NewCounter(prometheus.CounterOpts{Name: "shop_log_lines_dropped_total", Help: "Access log lines that could not be written (a full disk) and were dropped."})
	c.reg.MustRegister(c.requests, c.latency, c.payments, c.breakers, c.droppedC)
}

// Handler serves the API. Requests to /products, /checkout and /orders
// share the instance's workers; /health, /stats and /metrics do not.
func (c *Checkout) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /products", c.route("products", true, c.products))
	// A product's page comes from the database: its price is current.
	mux.Handle("GET /products/{id}", c.route("product", true, byID(c, "product", c.store.Product, ErrNoProduct, http.StatusInternalServerError)))
	mux.Handle("POST /checkout", c.route("checkout", true, c.checkout))
	mux.Handle("GET /orders/{id}", c.route("order", true, byID(c, "order", c.store.Order, ErrNoOrder, http.StatusServiceUnavailable)))
	mux.Handle("GET /stats", c.route("stats", false, c.stats))
	mux.Handle("GET /health", c.route("health", false, c.health))
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	return mux
}

// statusWriter remembers the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (c *Checkout) route(name string, pooled bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if pooled {
			select {
			case c.slots <- struct{}{}:
				defer func() { <-c.slots }()
			case <-r.Context().Done():
				c.requests.WithLabelValues(name, "499").Inc()
				return
			}
		}
		if pooled && !c.logRequest(sw, r) {
			c.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
			return
		}
		h(sw, r)
		c.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		c.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
	})
}

// logRequest writes the access log line; false means the request was
// answered already (the fragile build, when the line cannot be written).
func (c *Checkout) logRequest(w http.ResponseWriter, r *http.Request) bool {
	if c.logFile == nil {
		return true
	}
	line := time.Now().UTC().Format(time.RFC3339Nano) + " " + r.Method + " " + r.URL.Path + "\n"
	c.logMu.Lock()
	_, err := c.logFile.WriteString(line)
	c.logMu.Unlock()
	if err == nil {
		return true
	}
	if c.cfg.Build == Resilient {
		c.dropped.Add(1) // story(disk-fills): the request matters more than its log line
		c.droppedC.Inc()
		return true
	}
	writeError(w, http.StatusInternalServerError, "access log: %v", err) // story(disk-fills): no log line, no answer
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]any{"error": fmt.Sprintf(format, args...), "status": code})
}

// ctx is the context of an outbound call: the request's in the resilient
// build; in the fragile one, a context that never ends, as in code that
// passes context.Background() everywhere.
func (c *Checkout) ctx(r *http.Request) context.Context {
	if c.cfg.Build == Resilient {
		return r.Context()
	}
	return context.Background() // story(db-primary-down): no deadline on any call
}

func (c *Checkout) products(w http.ResponseWriter, r *http.Request) {
	ctx := c.ctx(r)
	if c.cfg.Build == Fragile {
		b, err := c.cache.Get(ctx, productsKey).Bytes()
		if err == nil {
			writeRaw(w, b)
			return
		}
		if !errors.Is(err, redis.Nil) {
			writeError(w, http.StatusInternalServerError, "cache: %v", err) // story(cache-dies): a cache error fails the request
			return
		}
		ps, err := c.store.Products(ctx)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "database: %v", err)
			return
		}
		b, _ = json.Marshal(ps)
		if err := c.cache.Set(ctx, productsKey, b, 10*time.Minute).Err(); err != nil {
			writeError(w, http.StatusInternalServerError, "cache: %v", err)
			return
		}
		writeRaw(w, b)
		return
	}
	// Resilient: the cache behind a breaker with a short timeout; on a miss
	// or any cache trouble, the database (reads retried with backoff).
	b, err := c.cacheCB.Execute(func() ([]byte, error) { // story(cache-dies): the cache behind a breaker, 100 ms a call
		cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
		defer cancel()
		b, err := c.cache.Get(cctx, productsKey).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, nil // a miss is not a failure
		}
		return b, err
	})
	if err == nil && b != nil {
		writeRaw(w, b)
		return
	}
	ps, err := retryRead(ctx, c.store.Products) // story(cache-dies): the database when the cache fails
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "catalogue unavailable: %v", err)
		return
	}
	b, _ = json.Marshal(ps)
	_, _ = c.cacheCB.Execute(func() ([]byte, error) {
		cctx, cancel := context.WithTimeout(ctx, cacheTimeout)
		defer cancel()
		return nil, c.cache.Set(cctx, productsKey, b, 10*time.Minute).Err()
	})
	writeRaw(w, b)
}

// byID serves the record that the path's {id} names, read by read
// (retried with backoff in the resilient build): 404 for notFound, and
// failCode for any other error.
func byID[T any](c *Checkout, what string, read func(context.Context, int64) (T, error), notFound error, failCode int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "%s id %q: want a number", what, r.PathValue("id"))
			return
		}
		readOne := read
		if c.cfg.Build == Resilient {
			readOne = func(ctx context.Context, id int64) (T, error) {
				return retryRead(ctx, func(ctx context.Context) (T, error) { return read(ctx, id) })
			}
		}
		v, err := readOne(c.ctx(r), id)
		switch {
		case errors.Is(err, notFound):
			writeError(w, http.StatusNotFound, "%s %d: %v", what, id, err)
		case err != nil:
			writeError(w, failCode, "%s %d: %v", what, id, err)
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

func writeRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

type checkoutRequest struct {
	ProductID int64 `json:"product_id"`
}

func (c *Checkout) checkout(w http.ResponseWriter, r *http.Request) {
	var req checkoutRequest
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "body: %v", err)
			return
		}
	}
	if req.ProductID == 0 {
		req.ProductID = 1
	}
	ctx := c.ctx(r)
	dctx, cancel := withTimeout(ctx, c.timeout(dbTimeout))
	// The resilient build announces the order through the outbox, in the
	// order's own transaction; the relay hands it to the broker. Its
	// orders carry a key, under which the broker can take one that the
	// database does not take in time.
	intake := c.cfg.Build == Resilient && c.broker != nil
	var key string
	if intake {
		key = newIntakeKey()
	}
	order, err := c.store.CreateOrder(dctx, req.ProductID, intake, key)
	cancel()
	if err != nil && intake && !errors.Is(err, ErrNoProduct) && !errors.Is(err, ErrNotForSale) {
		// story(db-packet-loss, db-primary-down, db-pool-exhausted): an order the database does not take in time is taken by the broker
		if perr := c.takeOrder(ctx, key, req.ProductID); perr == nil {
			c.payments.WithLabelValues("accepted").Inc()
			writeJSON(w, http.StatusAccepted, intakeOrder{Key: key, ProductID: req.ProductID, Status: "accepted"})
			return
		}
	}
	switch {
	case errors.Is(err, ErrNoProduct):
		writeError(w, http.StatusNotFound, "product %d: %v", req.ProductID, err)
		return
	case errors.Is(err, ErrNotForSale):
		writeError(w, http.StatusConflict, "product %d: %v", req.ProductID, err) // story(db-nulls): an unpriced product is refused, not a 5xx
		return
	case err != nil:
		w.Header().Set("Retry-After", "1") // story(db-pool-exhausted): a clear 503 at once
		writeError(w, http.StatusServiceUnavailable, "cannot write the order: %v", err)
		return
	}
	if c.cfg.Build == Fragile && c.broker != nil {
		// Announced before the charge, and the checkout waits for the
		// broker's word: no broker, no order.
		payload, _ := json.Marshal(order)
		if err := c.broker.publish(ctx, subjectOrders, "order-"+strconv.FormatInt(order.ID, 10), payload); err != nil { // story(queue-down): the checkout waits for the broker
			_ = c.store.SetStatus(ctx, order.ID, StatusLost)
			c.payments.WithLabelValues(StatusLost).Inc()
			writeError(w, http.StatusServiceUnavailable, "order %d: cannot announce it: %v", order.ID, err)
			return
		}
	}
	if c.cfg.Build == Fragile {
		// Synchronous payment without a timeout: as slow as the processor.
		chargeID, err := c.charge(ctx, order) // story(slow-payment, cpu-spike, service-unreachable): the checkout waits for the charge
		if err != nil {
			_ = c.store.SetStatus(ctx, order.ID, StatusLost) // story(payment-errors, error-alert, dns-fails, memory-pressure, schema-mismatch): a failed charge loses the order
			c.payments.WithLabelValues(StatusLost).Inc()
			writeError(w, http.StatusBadGateway, "order %d: payment failed: %v", order.ID, err)
			return
		}
		_ = c.store.SetPaid(ctx, order.ID, chargeID)
		order.ChargeID = chargeID
		c.payments.WithLabelValues(StatusPaid).Inc()
		order.Status = StatusPaid
		writeJSON(w, http.StatusCreated, order)
		return
	}
	// Resilient: charge behind a breaker with a timeout; when the processor
	// is slow or the breaker open, queue the payment for the worker.
	chargeID, err := c.payCB.Execute(func() (string, error) {
		pctx, cancel := context.WithTimeout(ctx, payTimeout)
		defer cancel()
		return c.charge(pctx, order)
	})
	status, code := StatusPaid, http.StatusCreated
	if err != nil {
		status, code = StatusQueued, http.StatusAccepted // story(slow-payment, payment-errors, error-alert, dns-fails, memory-pressure, cpu-spike, service-unreachable): queued, not failed
		c.log.Info("payment queued", "order", order.ID, "err", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	switch {
	case status == StatusPaid:
		err = c.store.SetPaid(sctx, order.ID, chargeID)
		order.ChargeID = chargeID
	case c.broker != nil:
		err = c.store.QueuePayment(sctx, order) // the payment travels through the broker
	default:
		err = c.store.SetStatus(sctx, order.ID, status)
	}
	if err != nil {
		c.log.Warn("order status not saved", "order", order.ID, "status", status, "err", err)
	}
	c.payments.WithLabelValues(status).Inc()
	order.Status = status
	writeJSON(w, code, order)
}

// intakeOrder is an order taken by the broker, not yet in the database:
// the intake consumer writes it (once, by its key) and queues its payment.
type intakeOrder struct {
	Key       string `json:"intake_key"`
	ProductID int64  `json:"product_id"`
	Status    string `json:"status"`
}

func newIntakeKey() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// takeOrder hands an order to the broker, with its key as the message id.
func (c *Checkout) takeOrder(ctx context.Context, key string, productID int64) error {
	payload, _ := json.Marshal(intakeOrder{Key: key, ProductID: productID, Status: "accepted"})
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := c.broker.publish(pctx, subjectIntake, "intake-"+key, payload)
	if err != nil {
		c.log.Warn("order not taken by the broker either", "key", key, "err", err)
	}
	return err
}

// takeIntake writes an order the broker took, once, and queues its
// payment; while the database fails, the broker delivers it again, later
// each time. An order that can no longer be made (its product gone or
// unpriced since) is dropped, said in the log.
func (c *Checkout) takeIntake(ctx context.Context, msg jetstream.Msg) {
	var in intakeOrder
	if err := json.Unmarshal(msg.Data(), &in); err != nil || in.Key == "" {
		c.log.Warn("order intake unreadable: dropped", "data", string(msg.Data()), "err", err)
		_ = msg.Term()
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 2*dbTimeout)
	o, err := c.store.CreateOrderOnce(wctx, in.Key, in.ProductID, true) // story(db-packet-loss): written once, by its key
	if err == nil && o.Status == StatusPending {
		err = c.store.QueuePayment(wctx, o)
	}
	cancel()
	switch {
	case errors.Is(err, ErrNoProduct) || errors.Is(err, ErrNotForSale):
		c.log.Warn("order intake cannot be made: dropped", "key", in.Key, "product", in.ProductID, "err", err)
		_ = msg.Term()
	case err != nil:
		_ = msg.NakWithDelay(redeliveryDelay(msg))
	default:
		c.log.Info("order intake written", "key", in.Key, "order", o.ID)
		_ = msg.Ack()
	}
}

// timeout is d in the resilient build and none in the fragile one.
func (c *Checkout) timeout(d time.Duration) time.Duration {
	if c.cfg.Build == Resilient {
		return d
	}
	return 0
}

// charge asks the card processor to charge an order and returns the
// charge id; the order id is the idempotency key, so charging again is
// safe. The resilient build checks the answer (status "succeeded" and a
// charge id, else the outcome is unknown and the payment is queued) and
// retries a failed attempt with backoff and jitter; the fragile build
// takes any 200 as paid.
func (c *Checkout) charge(ctx context.Context, o Order) (string, error) {
	if c.cfg.Build == Fragile {
		return c.chargeOnce(ctx, o)
	}
	return backoff.Retry(ctx, func() (string, error) { return c.chargeOnce(ctx, o) },
		backoff.WithBackOff(newBackOff(50*time.Millisecond, 200*time.Millisecond)), backoff.WithMaxTries(3)) // story(payment-errors, error-alert): three tries, backoff with jitter
}

// errMalformed is a processor answer that does not say the charge happened.
var errMalformed = errors.New("card processor: malformed answer")

func (c *Checkout) chargeOnce(ctx context.Context, o Order) (string, error) {
	body, _ := json.Marshal(map[string]int64{"order_id": o.ID, "amount_cents": o.AmountCents})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.Payments, "/")+"/charge", bytes.NewReader(body))
	if err != nil {
		return "", backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-"+strconv.FormatInt(o.ID, 10))
	resp, err := c.pay.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("card processor: %s", resp.Status)
	}
	var answer struct {
		ChargeID    string  `json:"charge_id"`
		Status      *string `json:"status"`
		AmountCents int64   `json:"amount_cents"`
	}
	err = json.Unmarshal(b, &answer)
	if c.cfg.Build == Fragile {
		if err != nil {
			return "", fmt.Errorf("card processor: %w", err) // story(schema-mismatch): an answer it cannot decode fails the order, though the card was charged
		}
		return answer.ChargeID, nil // story(payment-malformed): a 200 is a payment, whatever it says
	}
	// What the answer says is checked field by field (names and types
	// included): an answer that does not say this charge succeeded leaves
	// the outcome unknown, and the payment is queued.
	valid := err == nil && answer.Status != nil && *answer.Status == "succeeded" && answer.ChargeID != "" && answer.AmountCents == o.AmountCents // story(schema-mismatch): the answer is validated
	if !valid {
		return "", fmt.Errorf("%w: %.200s", errMalformed, b) // story(payment-malformed): not the processor's word: the payment is queued
	}
	return answer.ChargeID, nil
}

func (c *Checkout) stats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := withTimeout(c.ctx(r), c.timeout(time.Second))
	defer cancel()
	st, err := c.store.Stats(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "stats: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Stats
		LogDropped int64 `json:"log_dropped"` // by the instance that answers
	}{st, c.dropped.Load()})
}

// health checks the database and the cache, each with its own short
// timeout, in both builds: 200, or 503 naming what is unhealthy.
func (c *Checkout) health(w http.ResponseWriter, r *http.Request) {
	var mu sync.Mutex
	bad := map[string]string{}
	var wg sync.WaitGroup
	check := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			defer cancel()
			if err := f(ctx); err != nil {
				mu.Lock()
				bad[name] = err.Error()
				mu.Unlock()
			}
		})
	}
	check("database", c.store.Ping)
	check("cache", func(ctx context.Context) error { return c.cache.Ping(ctx).Err() })
	wg.Wait()
	body := map[string]any{"status": "ok", "build": c.cfg.Build, "zone": c.cfg.Zone}
	if len(bad) > 0 {
		body["status"], body["unhealthy"] = "unhealthy", bad
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// payQueued charges queued orders, oldest first; it stops at the first
// failure (the breaker is likely open).
func (c *Checkout) payQueued(ctx context.Context) (int, error) {
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	orders, err := c.store.Queued(qctx, 20)
	cancel()
	if err != nil {
		return 0, err
	}
	paid := 0
	for _, o := range orders {
		if err := c.payOrder(ctx, o); err != nil {
			return paid, err
		}
		paid++
	}
	return paid, nil
}

// payOrder charges a queued order through the breaker and marks it paid.
func (c *Checkout) payOrder(ctx context.Context, o Order) error {
	chargeID, err := c.payCB.Execute(func() (string, error) {
		pctx, cancel := context.WithTimeout(ctx, payTimeout)
		defer cancel()
		return c.charge(pctx, o)
	})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	return c.store.SetPaid(sctx, o.ID, chargeID)
}

// payFromQueue handles a queued payment from the broker: it charges the
// order (the order id is the card processor's idempotency key) unless
// the order is no longer queued (a redelivery of a payment made), and
// asks for a redelivery, later each time, while the charge fails.
func (c *Checkout) payFromQueue(ctx context.Context, msg jetstream.Msg) {
	var o Order
	if err := json.Unmarshal(msg.Data(), &o); err != nil || o.ID <= 0 {
		c.log.Warn("queued payment unreadable: dropped", "data", string(msg.Data()), "err", err)
		_ = msg.Term()
		return
	}
	rctx, cancel := context.WithTimeout(ctx, dbTimeout)
	cur, err := c.store.Order(rctx, o.ID)
	cancel()
	switch {
	case err == nil && cur.Status != StatusQueued:
		_ = msg.Ack() // paid already
		return
	case err == nil:
		err = c.payOrder(ctx, cur)
	}
	if err != nil { // story(memory-pressure, cpu-spike): redelivered, later each time, while the charge fails
		_ = msg.NakWithDelay(redeliveryDelay(msg))
		return
	}
	c.log.Info("queued payment confirmed", "order", o.ID)
	_ = msg.Ack()
}

// announce handles an order's announcement: the confirmation e-mail and
// the stock count act on its first delivery only.
func (c *Checkout) announce(ctx context.Context, msg jetstream.Msg) {
	var o Order
	if err := json.Unmarshal(msg.Data(), &o); err != nil || o.ID <= 0 {
		c.log.Warn("announcement unreadable: dropped", "data", string(msg.Data()), "err", err)
		_ = msg.Term()
		return
	}
	rctx, cancel := context.WithTimeout(ctx, dbTimeout)
	first, err := c.store.RecordAnnouncement(rctx, o.ID) // story(queue-down): the consumer is idempotent
	cancel()
	if err != nil {
		_ = msg.NakWithDelay(redeliveryDelay(msg))
		return
	}
	if first {
		c.log.Debug("order confirmation sent", "order", o.ID)
	}
	_ = msg.Ack()
}

// redeliveryDelay backs off with the number of deliveries: 250 ms, 500 ms,
// ... up to 4 s, with jitter.
func redeliveryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = min(md.NumDelivered, 5)
	}
	d := workerInterval << (n - 1)
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// relay hands the outbox to the broker until ctx ends: each message is
// published with its outbox id as the broker's message id, and deleted
// once the broker has it. While the broker is down it waits, longer each
// time (up to 1 s), and tries again: nothing is lost, and a message that
// two instances (or a retry) publish twice is stored once.
func (c *Checkout) relay(ctx context.Context) {
	b := newBackOff(100*time.Millisecond, time.Second)
	wait := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := c.relayOnce(ctx); err != nil && ctx.Err() == nil { // story(queue-down): the relay drains the outbox when the broker is back
			wait = b.NextBackOff()
			continue
		}
		b.Reset()
		wait = 100 * time.Millisecond
	}
}

func (c *Checkout) relayOnce(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	msgs, err := c.store.Outbox(qctx, 100)
	cancel()
	if err != nil {
		return err
	}
	for _, m := range msgs {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.broker.publish(pctx, m.Subject, m.MsgID, m.Payload)
		cancel()
		if err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, dbTimeout)
		err = c.store.DeleteOutbox(dctx, m.ID)
		cancel()
		if err != nil {
			return err
		}
	}
	if len(msgs) > 0 {
		c.log.Debug("outbox relayed", "messages", len(msgs))
	}
	return nil
}

// worker confirms queued payments until ctx ends, backing off (with
// jitter) while the processor or the database fails.
func (c *Checkout) worker(ctx context.Context) {
	b := newBackOff(workerInterval, 4*time.Second)
	wait := workerInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := c.payQueued(ctx)
		if n > 0 {
			c.log.Info("queued payments confirmed", "orders", n)
		}
		if err != nil && ctx.Err() == nil {
			wait = b.NextBackOff()
			if wait == backoff.Stop {
				wait = 4 * time.Second
			}
			continue
		}
		b.Reset()
		wait = workerInterval
	}
}

// Run listens, prepares the database (retrying while it comes up), and
// serves until ctx ends. The resilient build also runs the payment worker.
func (c *Checkout) Run(ctx context.Context) error {
	defer c.close()
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	if c.cfg.LogDir != "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		f, err := os.OpenFile(filepath.Join(c.cfg.LogDir, "access-"+port+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		c.logFile = f
		defer f.Close()
	}
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return struct{}{}, c.store.Migrate(mctx)
	}, backoff.WithBackOff(newBackOff(100*time.Millisecond, time.Second)), backoff.WithMaxElapsedTime(30*time.Second))
	if err != nil {
		return fmt.Errorf("database %s: %w", redactURL(c.cfg.DB), err)
	}
	if c.cfg.Build == Resilient {
		c.warmPool(ctx, 8) // story(db-pool-exhausted, db-packet-loss): connections opened before serving
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	switch {
	case c.broker != nil && c.cfg.Build == Resilient:
		wg.Go(func() { c.relay(wctx) })
		wg.Go(func() {
			c.broker.consume(wctx, c.log, "payer", subjectPayments, func(m jetstream.Msg) { c.payFromQueue(wctx, m) })
		})
		wg.Go(func() {
			c.broker.consume(wctx, c.log, "intake", subjectIntake, func(m jetstream.Msg) { c.takeIntake(wctx, m) })
		})
	case c.cfg.Build == Resilient:
		wg.Go(func() { c.worker(wctx) })
	}
	if c.broker != nil {
		wg.Go(func() {
			c.broker.consume(wctx, c.log, "announcer", subjectOrders, func(m jetstream.Msg) { c.announce(wctx, m) })
		})
	}
	c.log.Info("checkout serving", "listen", ln.Addr().String(), "build", c.cfg.Build, "zone", c.cfg.Zone)
	err = Serve(ctx, srv, ln)
	stopWorker()
	wg.Wait()
	return err
}

// warmPool opens n database connections before the instance serves, so
// that its first requests do not pay for connecting within their short
// timeouts (a new PostgreSQL backend can take a while on a busy machine).
func (c *Checkout) warmPool(ctx context.Context, n int) {
	c.store.DB().SetMaxIdleConns(20)
	var conns []*sql.Conn
	for range n {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := c.store.DB().Conn(wctx)
		cancel()
		if err != nil {
			break
		}
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		_ = conn.Close() // back to the pool, open
	}
}

func (c *Checkout) close() {
	c.closeOnce.Do(func() {
		_ = c.cache.Close()
		if c.broker != nil {
			c.broker.close()
		}
		_ = c.store.Close()
	})
}

// redactURL hides a password in a database URL.
func redactURL(u string) string {
	if i, j := strings.Index(u, "://"), strings.LastIndex(u, "@"); i >= 0 && j > i {
		if k := strings.Index(u[i+3:j], ":"); k >= 0 {
			return u[:i+3+k] + ":***" + u[j:]
		}
	}
	return u
}

// Serve serves srv on ln until ctx ends, then shuts it down, giving the
// requests under way 2 s. It returns Serve's error, or nil when ctx ended.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}
