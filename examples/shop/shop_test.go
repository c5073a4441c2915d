package shop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/internal/freeport"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/stress"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// need skips a test whose server is missing, except under CI=true, where
// make test installs it and a missing one is a failure.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed: make test installs it", what)
	}
	t.Skipf("%s is not installed", what)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// startRedis runs Debian's redis-server on a free port until the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	need(t, "redis-server", shop.RedisServer() != "")
	addr := freeAddr(t)
	args, _ := shop.RedisArgs(addr)
	cmd := exec.Command(shop.RedisServer(), args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitTCP(t, addr)
	return addr
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port that is coming up
	}
}

var (
	pgOnce sync.Once
	pg     *shop.Postgres
	pgErr  error
	pgN    int
	pgMu   sync.Mutex
)

// postgresURL returns a new database on one PostgreSQL server shared by
// the package's tests (TestMain stops it).
func postgresURL(t *testing.T) string {
	t.Helper()
	_, err := shop.FindPostgres()
	need(t, "PostgreSQL", err == nil)
	pgOnce.Do(func() { pg, pgErr = shop.StartPostgres(context.Background(), shop.PostgresConfig{}) })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	pgMu.Lock()
	pgN++
	name := fmt.Sprintf("t%d", pgN)
	pgMu.Unlock()
	if err := pg.CreateDatabase(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return pg.URL(name)
}

// stores gives each store test both engines.
func stores(t *testing.T) map[string]string {
	return map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "shop.db"),
		"postgres": postgresURL(t),
	}
}

func TestStoreOrdersAndStats(t *testing.T) {
	for engine, url := range stores(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			// Instances starting together all migrate.
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for range 3 {
				wg.Go(func() {
					s, err := shop.OpenStore(url)
					if err == nil {
						err = s.Migrate(ctx)
						s.Close()
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("concurrent migrate: %v", err)
				}
			}
			s, err := shop.OpenStore(url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ps, err := s.Products(ctx)
			if err != nil || len(ps) != 10 {
				t.Fatalf("products = %d, %v; want the 10 of the catalogue once", len(ps), err)
			}
			var ids []int64
			for range 4 {
				o, err := s.CreateOrder(ctx, 3, false, "")
				if err != nil || o.AmountCents != *ps[2].PriceCents || o.Status != shop.StatusPending {
					t.Fatalf("CreateOrder = %+v, %v", o, err)
				}
				ids = append(ids, o.ID)
			}
			if _, err := s.CreateOrder(ctx, 999, false, ""); err != shop.ErrNoProduct {
				t.Fatalf("order of an unknown product: %v", err)
			}
			if err := s.SetPaid(ctx, ids[0], "ch_1"); err != nil {
				t.Fatal(err)
			}
			for i, st := range []string{shop.StatusQueued, shop.StatusLost} {
				if err := s.SetStatus(ctx, ids[i+1], st); err != nil {
					t.Fatal(err)
				}
			}
			q, err := s.Queued(ctx, 10)
			if err != nil || len(q) != 1 || q[0].ID != ids[1] {
				t.Fatalf("Queued = %+v, %v", q, err)
			}
			got, err := s.Stats(ctx)
			want := shop.Stats{Created: 4, Paid: 1, Queued: 1, Pending: 1, Lost: 1}
			if err != nil || got != want {
				t.Fatalf("Stats = %+v, %v; want %+v", got, err, want)
			}
			// Paid without a charge id: the processor's word is missing.
			if err := s.SetStatus(ctx, ids[3], shop.StatusPaid); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Stats(ctx); got.Unverified != 1 || got.Paid != 2 {
				t.Fatalf("after a paid order without a charge id: %+v", got)
			}
			if o, err := s.Order(ctx, ids[0]); err != nil || o.ChargeID != "ch_1" || o.Status != shop.StatusPaid {
				t.Fatalf("Order = %+v, %v", o, err)
			}
			if _, err := s.Order(ctx, 12345); err != shop.ErrNoOrder {
				t.Fatalf("unknown order: %v", err)
			}
		})
	}
}

// payments is a card processor that can be made to hang.
type payments struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hang chan struct{} // when not nil, /charge waits for it to close
}

func newPayments(t *testing.T) *payments {
	p := &payments{}
	h := shop.NewPayments().Handler()
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		hang := p.hang
		p.mu.Unlock()
		if hang != nil && r.URL.Path == "/charge" {
			select {
			case <-hang:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { p.release(); p.srv.Close() })
	return p
}

func (p *payments) slow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hang = make(chan struct{})
}

func (p *payments) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hang != nil {
		close(p.hang)
		p.hang = nil
	}
}

// startCheckout serves one instance until the test ends.
func startCheckout(t *testing.T, build shop.Build, db, cache, pay string) string {
	t.Helper()
	return startCheckoutWith(t, shop.CheckoutConfig{Build: build, DB: db, Cache: cache, Payments: pay})
}

// startCheckoutWith serves an instance of cfg on a free port until the test
// ends.
func startCheckoutWith(t *testing.T, cfg shop.CheckoutConfig) string {
	t.Helper()
	cfg.Listen = freeAddr(t)
	c, err := shop.NewCheckout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("checkout Run: %v", err)
		}
	})
	waitHTTP(t, "http://"+cfg.Listen+"/stats")
	return "http://" + cfg.Listen
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a server that is coming up
	}
}

func call(t *testing.T, client *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func stats(t *testing.T, base string) shop.Stats {
	t.Helper()
	_, body := call(t, http.DefaultClient, "GET", base+"/stats", "")
	var st shop.Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/stats: %v: %s", err, body)
	}
	return st
}

// A dead cache: the resilient build serves the catalogue from the
// database; the fragile one fails the request.
func TestProductsWithoutCache(t *testing.T) {
	dead := freeAddr(t) // nothing listens there
	pay := newPayments(t)
	for build, want := range map[shop.Build]int{shop.Resilient: 200, shop.Fragile: 500} {
		t.Run(string(build), func(t *testing.T) {
			base := startCheckout(t, build, "sqlite:"+filepath.Join(t.TempDir(), "shop.db"), dead, pay.srv.URL)
			for range 5 { // past the breaker's threshold, too
				code, body := call(t, http.DefaultClient, "GET", base+"/products", "")
				if code != want {
					t.Fatalf("GET /products = %d %s; want %d", code, body, want)
				}
				if want == 200 && !strings.Contains(body, "burr grinder") {
					t.Fatalf("catalogue missing: %s", body)
				}
			}
			code, body := call(t, http.DefaultClient, "GET", base+"/health", "")
			if code != 503 || !strings.Contains(body, `"cache"`) {
				t.Fatalf("/health with a dead cache = %d %s; want 503 naming the cache", code, body)
			}
		})
	}
}

// The catalogue is cached: a second read does not need the database.
func TestProductsCached(t *testing.T) {
	cache := startRedis(t)
	pay := newPayments(t)
	base := startCheckout(t, shop.Fragile, postgresURL(t), cache, pay.srv.URL)
	if code, body := call(t, http.DefaultClient, "GET", base+"/products", ""); code != 200 {
		t.Fatalf("GET /products = %d %s", code, body)
	}
	if code, body := call(t, http.DefaultClient, "GET", base+"/health", ""); code != 200 {
		t.Fatalf("/health = %d %s", code, body)
	}
	rc := redis.NewClient(&redis.Options{Addr: cache, Protocol: 2, DisableIdentity: true})
	defer rc.Close()
	if n, err := rc.Exists(context.Background(), "shop:products").Result(); err != nil || n != 1 {
		t.Fatalf("catalogue not in the cache: EXISTS = %d, %v", n, err)
	}
}

// A hung card processor: the resilient build queues the payment and
// answers 202 at once; the worker charges it once the processor is back,
// so no order is lost. The fragile build waits as long as the processor.
func TestSlowPaymentIsQueued(t *testing.T) {
	cache := startRedis(t)
	pay := newPayments(t)
	base := startCheckout(t, shop.Resilient, postgresURL(t), cache, pay.srv.URL)
	if code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 2}`); code != 201 || !strings.Contains(body, `"paid"`) {
		t.Fatalf("checkout with a healthy processor = %d %s", code, body)
	}
	pay.slow()
	for i := range 4 { // the breaker opens after 3 timeouts; then no wait at all
		code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 2}`)
		if code != 202 || !strings.Contains(body, `"queued"`) {
			t.Fatalf("checkout %d with a hung processor = %d %s; want 202 queued", i, code, body)
		}
	}
	if st := stats(t, base); st.Queued != 4 || st.Paid != 1 {
		t.Fatalf("stats while the processor hangs: %+v", st)
	}
	pay.release()
	processtest.WaitFor(t, "the queued payments confirmed", func() bool {
		st := stats(t, base)
		return st.Queued == 0 && st.Paid == 5 && st.Lost == 0
	})
	_, body := call(t, http.DefaultClient, "GET", pay.srv.URL+"/stats", "")
	if !strings.Contains(body, `"charges":5`) {
		t.Fatalf("processor charged other than once per order: %s", body)
	}
}

func TestFragileCheckoutWaitsForThePayment(t *testing.T) {
	cache := startRedis(t)
	pay := newPayments(t)
	base := startCheckout(t, shop.Fragile, "sqlite:"+filepath.Join(t.TempDir(), "shop.db"), cache, pay.srv.URL)
	pay.slow()
	client := &http.Client{Timeout: 1500 * time.Millisecond}
	if code, body := call(t, client, "POST", base+"/checkout", `{}`); code != 0 {
		t.Fatalf("fragile checkout with a hung processor answered %d %s; want it to hang past the client's timeout", code, body)
	}
	pay.release()
	// Without a timeout, the order is paid once the processor answers.
	processtest.WaitFor(t, "the order paid", func() bool { return stats(t, base).Paid == 1 })
}

// The database has no free connection slot (another client holds them
// all, and the shop's own sessions were cut): the resilient build answers
// a checkout at once with a 503 and Retry-After; the fragile build waits
// for a slot, past the client's patience, and writes the order once the
// slots come back.
func TestNoFreeDatabaseConnection(t *testing.T) {
	_, err := shop.FindPostgres()
	need(t, "PostgreSQL", err == nil)
	const slots = 12
	pg, err := shop.StartPostgres(context.Background(), shop.PostgresConfig{MaxConnections: slots})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	if err := pg.CreateDatabase(context.Background(), "shop"); err != nil {
		t.Fatal(err)
	}
	cache := startRedis(t)
	pay := newPayments(t)
	fragile := startCheckout(t, shop.Fragile, pg.URL("shop"), cache, pay.srv.URL)
	resilient := startCheckout(t, shop.Resilient, pg.URL("shop"), cache, pay.srv.URL)
	client := &http.Client{Timeout: 3 * time.Second}
	for _, base := range []string{fragile, resilient} {
		if code, body := call(t, client, "POST", base+"/checkout", `{"product_id": 2}`); code != http.StatusCreated {
			t.Fatalf("%s before the fault: %d %s", base, code, body)
		}
	}

	// An admin session closes the shop's database to new sessions, cuts
	// the ones it has, and keeps one slot; the runaway client takes every
	// other one; then the database opens again, with no slot free.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `ALTER DATABASE shop ALLOW_CONNECTIONS false`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop'`); err != nil {
		t.Fatal(err)
	}
	processtest.WaitFor(t, "the shop's sessions to end", func() bool {
		var n int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop'`).Scan(&n)
		return err == nil && n == 0
	})
	held := make(chan struct{})
	done := make(chan stress.Result, 1)
	go func() {
		res, err := stress.Connections(ctx, stress.ConnConfig{Protocol: "postgres", DSN: pg.URL("postgres"), Count: slots}, func() { close(held) })
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	release := func() {
		cancel()
		if res := <-done; res.Conns != slots-1 {
			t.Errorf("the runaway client held %d sessions; want every slot but the admin's, %d", res.Conns, slots-1)
		}
		_ = admin.Close(context.Background())
	}
	select {
	case <-held:
	case <-done:
		t.Fatal("the runaway client held nothing")
	}
	if _, err := admin.Exec(ctx, `ALTER DATABASE shop ALLOW_CONNECTIONS true`); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, pg.URL("shop")); err == nil {
		_ = c.Close(ctx)
		t.Fatal("a new session was accepted: the slots are not all held")
	}

	// The resilient pool still holds the cut sessions: each fails one
	// request (SQLSTATE 57P01) before it is dropped. Then no session is
	// left and none can be opened: a 503 that says why.
	var last string
	for i := 0; i < 40 && !strings.Contains(last, "too many clients"); i++ {
		resp, err := client.Post(resilient+"/checkout", "application/json", strings.NewReader(`{"product_id": 2}`))
		if err != nil {
			t.Fatalf("resilient checkout without a free connection: %v; want an answer at once", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("resilient checkout without a free connection: %s (Retry-After %q) %s; want 503 with Retry-After",
				resp.Status, resp.Header.Get("Retry-After"), b)
		}
	}
	if !strings.Contains(last, "too many clients") {
		t.Errorf("resilient checkout without a free connection: %s; want the cause named", last)
	}
	fragileDone := make(chan int, 1)
	go func() {
		code, _ := call(t, client, "POST", fragile+"/checkout", `{"product_id": 2}`)
		fragileDone <- code
	}()
	if code := <-fragileDone; code != 0 {
		t.Errorf("fragile checkout without a free connection answered %d; want it to wait past the client's timeout", code)
	}

	release()
	// The fragile build's waiting request gets its slot and writes the
	// third order; both builds serve again.
	processtest.WaitFor(t, "the fragile build's waiting order written", func() bool { return stats(t, resilient).Created == 3 })
	for _, base := range []string{fragile, resilient} {
		if code, body := call(t, client, "POST", base+"/checkout", `{"product_id": 2}`); code != http.StatusCreated {
			t.Errorf("%s after the fault: %d %s", base, code, body)
		}
	}
}

func TestPaymentsIdempotent(t *testing.T) {
	srv := httptest.NewServer(shop.NewPayments().Handler())
	defer srv.Close()
	charge := func(key, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/charge", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, a := charge("k1", `{"order_id": 1, "amount_cents": 100}`)
	_, b := charge("k1", `{"order_id": 1, "amount_cents": 100}`)
	_, c := charge("", `{"order_id": 2, "amount_cents": 100}`)
	if a != b || a == c || !strings.Contains(a, `_1"`) || !strings.Contains(c, `_2"`) {
		t.Fatalf("charges: %s %s %s", a, b, c)
	}
	if code, _ := charge("", `{"order_id": 0}`); code != 400 {
		t.Fatalf("invalid charge = %d, want 400", code)
	}
	if code, _ := charge("", `not json`); code != 400 {
		t.Fatalf("bad body = %d, want 400", code)
	}
}

// backend is a checkout stand-in that names itself.
func backend(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func startBalancer(t *testing.T, build shop.Build, backends ...string) string {
	t.Helper()
	addr := freeAddr(t)
	b, err := shop.NewBalancer(shop.BalancerConfig{Listen: addr, Build: build, Backends: backends, HealthInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitTCP(t, addr)
	return "http://" + addr
}

// One instance of two is dead: the resilient balancer retries elsewhere
// (GET and POST alike: the connection was refused, nothing was sent);
// the fragile one fails every other request.
func TestBalancerDeadInstance(t *testing.T) {
	live := backend(t, "live")
	dead := freeAddr(t)
	liveAddr := strings.TrimPrefix(live.URL, "http://")
	for build, wantFailed := range map[shop.Build]int{shop.Resilient: 0, shop.Fragile: 5} {
		t.Run(string(build), func(t *testing.T) {
			base := startBalancer(t, build, dead, liveAddr)
			failed := 0
			for i := range 10 {
				method := []string{"GET", "POST"}[i%2]
				code, body := call(t, http.DefaultClient, method, base+"/products", "x")
				switch {
				case code == 502:
					failed++
				case code != 200 || body != "live":
					t.Fatalf("%s = %d %q", method, code, body)
				}
			}
			if failed != wantFailed {
				t.Fatalf("%d of 10 requests failed, want %d", failed, wantFailed)
			}
		})
	}
}

// An instance whose /health fails is taken out of rotation by the
// resilient balancer; when every instance fails it, all take traffic.
func TestBalancerHealthChecks(t *testing.T) {
	var mu sync.Mutex
	sick := true
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/health" && sick {
			w.WriteHeader(503)
			return
		}
		fmt.Fprint(w, "flaky")
	}))
	defer flaky.Close()
	good := backend(t, "good")
	base := startBalancer(t, shop.Resilient, strings.TrimPrefix(flaky.URL, "http://"), strings.TrimPrefix(good.URL, "http://"))
	// Health checks run every 50 ms: wait until only "good" answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := map[string]int{}
		for range 6 {
			_, body := call(t, http.DefaultClient, "GET", base+"/x", "")
			seen[body]++
		}
		if seen["good"] == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unhealthy instance still in rotation: %v", seen)
		}
	}
	mu.Lock()
	sick = false
	mu.Unlock()
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, body := call(t, http.DefaultClient, "GET", base+"/x", "")
		if body == "flaky" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("recovered instance never back in rotation")
		}
	}
}

func TestEmbeddedCache(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- shop.RunEmbeddedCache(ctx, addr) }()
	waitTCP(t, addr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "*1\r\n$4\r\nPING\r\n")
	buf := make([]byte, 7)
	_, err = io.ReadFull(c, buf)
	c.Close()
	if err != nil || string(buf) != "+PONG\r\n" {
		t.Fatalf("PING = %q, %v", buf, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestParseBuild(t *testing.T) {
	if _, err := shop.ParseBuild("sturdy"); err == nil || !strings.Contains(err.Error(), "fragile or resilient") {
		t.Fatalf("ParseBuild(sturdy) = %v", err)
	}
	if _, err := shop.OpenStore("mysql://x"); err == nil {
		t.Fatal("OpenStore of an unknown scheme succeeded")
	}
}

// A full log volume: the fragile build fails the request, the resilient
// one drops the line, counts it, and serves.
func TestFullLogVolume(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		need(t, "a tmpfs mount (root)", false)
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	cache := startRedis(t)
	pay := newPayments(t)
	for build, want := range map[shop.Build]int{shop.Fragile: 500, shop.Resilient: 200} {
		t.Run(string(build), func(t *testing.T) {
			logs := filepath.Join(dir, string(build))
			if err := os.Mkdir(logs, 0o755); err != nil {
				t.Fatal(err)
			}
			base := startCheckoutWith(t, shop.CheckoutConfig{Build: build, DB: "sqlite:" + filepath.Join(t.TempDir(), "shop.db"), Cache: cache, Payments: pay.srv.URL, LogDir: logs})
			if code, body := call(t, http.DefaultClient, "GET", base+"/products", ""); code != 200 {
				t.Fatalf("before the disk is full: %d %s", code, body)
			}
			// Fill what is left of the volume.
			f, _ := os.Create(filepath.Join(logs, "fill"))
			buf := make([]byte, 4096)
			for {
				if _, err := f.Write(buf); err != nil {
					break
				}
			}
			f.Close()
			t.Cleanup(func() { os.Remove(filepath.Join(logs, "fill")) })
			// The log file's last page still takes a few lines: then every
			// request meets the full disk.
			codes := map[int]int{}
			for range 200 {
				code, _ := call(t, http.DefaultClient, "GET", base+"/products", "")
				codes[code]++
			}
			if build == shop.Fragile && codes[500] == 0 || build == shop.Resilient && codes[200] != 200 {
				t.Fatalf("with a full log volume: status codes %v, want %d", codes, want)
			}
			if build == shop.Resilient {
				_, st := call(t, http.DefaultClient, "GET", base+"/stats", "")
				if strings.Contains(st, `"log_dropped":0`) || !strings.Contains(st, `"log_dropped":`) {
					t.Errorf("stats: %s, want the dropped lines counted", st)
				}
			}
		})
	}
}

// TestPaymentsAbandonedChargeNotMade: a charge whose client has hung up
// before its scoring ends is not made, and its CPU is not spent.
func TestPaymentsAbandonedChargeNotMade(t *testing.T) {
	p := shop.NewPayments()
	h := p.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the processor gets to it
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/charge", strings.NewReader(`{"order_id": 1, "amount_cents": 100}`))
	h.ServeHTTP(httptest.NewRecorder(), req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats", nil))
	if !strings.Contains(rec.Body.String(), `"charges":0`) {
		t.Errorf("stats after an abandoned charge: %s, want no charge", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/charge", strings.NewReader(`{"order_id": 1, "amount_cents": 100}`)))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "succeeded") {
		t.Errorf("the same charge from a client that waits: %d %s", rec.Code, rec.Body.String())
	}
}
