package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/examples/shop"
)

func newShopCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "shop",
		Short: "Run the demo shop's parts: checkout, payments, balancer, cache, queue, postgres",
		Long: `The demo shop is the small e-commerce backend that 'faultline demo' and the
experiments in examples/experiments break on purpose. Each part runs from the
faultline binary, so experiments launch them with {self} and nothing needs a
build step. Every part takes --build fragile|resilient where it matters:

  fragile    no timeouts on outbound calls, synchronous payment, cache errors
             fail the request, orders announced on the broker synchronously,
             round-robin balancer without health checks
  resilient  timeouts everywhere, circuit breakers, retries with backoff and
             jitter, cache -> database fallback, queued payments confirmed by
             a consumer, an outbox for the broker, balancer with health
             checks and retry elsewhere

Every part stops on Ctrl-C, SIGTERM or SIGHUP.`,
		Example: `  faultline shop postgres                      # prints DB_URL, DB_PIDFILE, DB_MAX_CONNECTIONS
  faultline shop cache --listen 127.0.0.1:16379
  faultline shop payments --listen 127.0.0.1:18090
  faultline shop queue --listen 127.0.0.1:14222 --store /tmp/shop-queue
  faultline shop checkout --build resilient --listen 127.0.0.1:18081 \
      --db sqlite:/tmp/shop.db --cache 127.0.0.1:16379 --payments http://127.0.0.1:18090 \
      --queue nats://127.0.0.1:14222
  faultline shop balancer --build resilient --listen 127.0.0.1:18080 --backends 127.0.0.1:18081`,
	})
	cmd.AddCommand(newShopCheckoutCmd(), newShopPaymentsCmd(), newShopBalancerCmd(), newShopCacheCmd(), newShopQueueCmd(), newShopPostgresCmd(), newShopPrometheusCmd())
	return cmd
}

// serveUntilSignal runs f until Ctrl-C, SIGTERM or SIGHUP.
func serveUntilSignal(c *cobra.Command, f func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(c.Context(), stopSignals()...)
	defer stop()
	if err := f(ctx); err != nil {
		return &exitError{ExitError, err}
	}
	return nil
}

func shopLogger(c *cobra.Command, part string) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil)).With("part", part)
}

func buildFlag(cmd *cobra.Command, b *string) {
	cmd.Flags().StringVar(b, "build", "fragile", "`fragile` (the before) or resilient (the after)")
}

func newShopCheckoutCmd() *cobra.Command {
	var cfg shop.CheckoutConfig
	var build string
	cmd := &cobra.Command{
		Use:   "checkout",
		Short: "Run one checkout API instance",
		Long: `Serves GET /products (cache, then database), GET /products/{id} (the database),
POST /checkout {"product_id": N} (writes the order, announces it on the broker,
charges the card), GET /orders/{id}, GET /stats (orders created, paid, queued,
pending, lost, unverified; announced, unannounced, redelivered, in the
outbox), GET /health (database and cache, each with its own short timeout;
503 names what is unhealthy) and GET /metrics.

With --queue, orders are announced on the broker: the fragile build publishes
each one before charging it and fails the order when the broker does not
take it; the resilient build writes the announcement to an outbox table in
the order's transaction and relays it when the broker is there, and its
queued payments travel through the broker too. Every instance consumes the
announcements, once each.`,
		Example: `  faultline shop checkout --build resilient --listen 127.0.0.1:18081 \
      --db postgres://shop@127.0.0.1:15432/shop --cache 127.0.0.1:16379 --payments http://127.0.0.1:18090`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := shop.ParseBuild(build)
			if err != nil {
				return usagef("--build: %v", err)
			}
			cfg.Build = b
			for flag, v := range map[string]string{"--db": cfg.DB, "--cache": cfg.Cache, "--payments": cfg.Payments} {
				if v == "" {
					return usagef("%s is required", flag)
				}
			}
			cfg.Logger = shopLogger(c, "checkout")
			co, err := shop.NewCheckout(cfg)
			if err != nil {
				return usagef("%v", err)
			}
			return serveUntilSignal(c, co.Run)
		},
	}
	buildFlag(cmd, &build)
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "`HOST:PORT` to serve on")
	f.StringVar(&cfg.DB, "db", "", "database `URL`: postgres://USER@HOST:PORT/DB or sqlite:PATH")
	f.StringVar(&cfg.Cache, "cache", "", "Redis `HOST:PORT`")
	f.StringVar(&cfg.Payments, "payments", "", "card processor base `URL`")
	f.StringVar(&cfg.Queue, "queue", "", "message broker `URL` (nats://HOST:PORT, 'faultline shop queue'; default: none)")
	f.StringVar(&cfg.Zone, "zone", "", "`zone` this instance runs in, reported by /health")
	f.StringVar(&cfg.LogDir, "log-dir", "", "`directory` for the access log, a line per request (default: none)")
	f.StringVar(&cfg.Resolver, "resolver", "", "DNS server `HOST:PORT` for the card processor's name (default: the system's)")
	f.IntVar(&cfg.Workers, "workers", 16, "requests served at once; more wait for a worker")
	return cmd
}

func newShopPaymentsCmd() *cobra.Command {
	var listen, pidfile string
	cmd := &cobra.Command{
		Use:   "payments",
		Short: "Run the card processor (POST /charge, idempotent by Idempotency-Key)",
		Long: `Serves POST /charge {"order_id": N, "amount_cents": N}, once per
Idempotency-Key (a repeated request gets the first charge back), GET /stats
and GET /health. Each new charge is risk-scored first, about 3 ms of CPU, so a
processor starved of CPU answers late. --pidfile writes its pid, for faults
that act on the process from outside (a CPU limit on its cgroup).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if pidfile != "" {
				if err := os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
					return &exitError{ExitError, err}
				}
				defer os.Remove(pidfile)
			}
			srv := &http.Server{Addr: listen, Handler: shop.NewPayments().Handler(), ReadHeaderTimeout: 5 * time.Second}
			return serveUntilSignal(c, func(ctx context.Context) error { return serveHTTP(ctx, srv) })
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8090", "`HOST:PORT` to serve on")
	cmd.Flags().StringVar(&pidfile, "pidfile", "", "`file` to write the process id to (removed on exit)")
	return cmd
}

func newShopQueueCmd() *cobra.Command {
	var cfg shop.QueueConfig
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Run the message broker: a NATS server with JetStream, from this binary",
		Long: `Runs the shop's broker on --listen: the NATS server (its Go module, built
into faultline) with JetStream, and the stream SHOP (subjects shop.orders and
shop.payments; a message id is remembered for 2 minutes, so a message
published twice is stored once). --store keeps the stream's files: a broker
killed and started again on the same directory still has what it accepted.`,
		Example: "  faultline shop queue --listen 127.0.0.1:14222 --store /tmp/shop-queue",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg.Logger = shopLogger(c, "queue")
			return serveUntilSignal(c, func(ctx context.Context) error { return shop.RunQueue(ctx, cfg) })
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:4222", "`HOST:PORT` to serve on")
	cmd.Flags().StringVar(&cfg.StoreDir, "store", "", "`directory` for the stream's files (default: a temporary one, removed on exit)")
	return cmd
}

func newShopPrometheusCmd() *cobra.Command {
	var listen, scrape, dir string
	cmd := &cobra.Command{
		Use:   "prometheus",
		Short: "Run Prometheus (Debian's) on the shop: checkout's /metrics and the ErrorRateTooHigh alert",
		Long: `Writes a Prometheus configuration into --dir that scrapes the checkout
instances of --scrape every second and evaluates the shop's alerting rules
(examples/shop/prometheus-rules.yml, written beside it) every second, then
becomes Prometheus (the prometheus binary on PATH: apt-get install
prometheus), listening on --listen with its data in --dir. Its alert
ErrorRateTooHigh fires when over 5 % of checkout's answers are 5xx for 2 s;
the experiment error-alert stops on it.`,
		Example: "  faultline shop prometheus --listen 127.0.0.1:19090 --scrape 127.0.0.1:18081,127.0.0.1:18082 --dir /tmp/shop-prometheus",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			bin, err := exec.LookPath("prometheus")
			if err != nil {
				return &exitError{ExitError, errors.New("prometheus is not installed: apt-get install prometheus (Debian's)")}
			}
			if scrape == "" || dir == "" {
				return usagef("shop prometheus needs --scrape HOST:PORT,... and --dir DIR")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return &exitError{ExitError, err}
			}
			rules, config := filepath.Join(dir, "rules.yml"), filepath.Join(dir, "prometheus.yml")
			err = errors.Join(os.WriteFile(rules, shop.PrometheusRules, 0o644),
				os.WriteFile(config, shop.PrometheusConfig(strings.Split(scrape, ","), rules), 0o644))
			if err != nil {
				return &exitError{ExitError, err}
			}
			// Prometheus takes this process's place (and pid), so that a run
			// stops Prometheus itself.
			args := []string{bin, "--config.file=" + config, "--web.listen-address=" + listen,
				"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--log.level=warn"}
			return &exitError{ExitError, syscall.Exec(bin, args, os.Environ())}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9090", "`HOST:PORT` for Prometheus's API")
	cmd.Flags().StringVar(&scrape, "scrape", "", "the checkout instances, `HOST:PORT,...`")
	cmd.Flags().StringVar(&dir, "dir", "", "`directory` for the configuration, the rules and the data")
	return cmd
}

// serveHTTP serves srv until ctx ends.
func serveHTTP(ctx context.Context, srv *http.Server) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	return shop.Serve(ctx, srv, ln)
}

func newShopBalancerCmd() *cobra.Command {
	var cfg shop.BalancerConfig
	var build, backends string
	cmd := &cobra.Command{
		Use:   "balancer",
		Short: "Run the balancer in front of the checkout instances",
		Long: `Fragile: round robin over every instance, one attempt, no timeouts.
Resilient: round robin over the instances whose /health answers 200 (all of
them when none does), and a failed request is tried on another instance when
that is safe: the connection was refused, or the method is idempotent.`,
		Example: `  faultline shop balancer --build resilient --listen 127.0.0.1:18080 \
      --backends 127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := shop.ParseBuild(build)
			if err != nil {
				return usagef("--build: %v", err)
			}
			cfg.Build = b
			for _, a := range strings.Split(backends, ",") {
				if a = strings.TrimSpace(a); a != "" {
					cfg.Backends = append(cfg.Backends, a)
				}
			}
			cfg.Logger = shopLogger(c, "balancer")
			bal, err := shop.NewBalancer(cfg)
			if err != nil {
				return usagef("%v", err)
			}
			return serveUntilSignal(c, bal.Run)
		},
	}
	buildFlag(cmd, &build)
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:8000", "`HOST:PORT` to serve on")
	cmd.Flags().StringVar(&backends, "backends", "", "comma-separated `HOST:PORT` of the checkout instances")
	return cmd
}

func newShopCacheCmd() *cobra.Command {
	var listen, server string
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Run the cache: Debian's redis-server when installed, else an embedded one",
		Long: `Runs the shop's Redis cache on --listen. With --server auto (the default) it
becomes redis-server when that is installed (the process is replaced, so a
fault that kills this pid kills Redis itself), else it serves the Redis
protocol from this process (miniredis). --server redis insists on the real one.`,
		Example: "  faultline shop cache --listen 127.0.0.1:16379\n  faultline shop cache --listen 127.0.0.1:16379 --server embedded",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			real := shop.RedisServer()
			switch server {
			case "auto", "redis", "embedded":
			default:
				return usagef("--server %q: want auto, redis or embedded", server)
			}
			if server == "redis" && real == "" {
				return &exitError{ExitError, fmt.Errorf("--server redis: redis-server is not installed (apt-get install redis-server)")}
			}
			if server != "embedded" && real != "" {
				args, err := shop.RedisArgs(listen)
				if err != nil {
					return usagef("--listen %q: %v", listen, err)
				}
				return &exitError{ExitError, syscall.Exec(real, args, os.Environ())}
			}
			return serveUntilSignal(c, func(ctx context.Context) error { return shop.RunEmbeddedCache(ctx, listen) })
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:6379", "`HOST:PORT` to serve on")
	cmd.Flags().StringVar(&server, "server", "auto", "`auto`, redis (Debian's redis-server) or embedded")
	return cmd
}

func newShopPostgresCmd() *cobra.Command {
	var port int
	var dir, listen string
	cmd := &cobra.Command{
		Use:   "postgres",
		Short: "Run PostgreSQL in a temporary directory, for the shop's experiments",
		Long: `Initialises a database cluster and runs PostgreSQL on 127.0.0.1 (as the
"postgres" user when run as root), creates the database "shop", and prints the
variables that the example experiments take. The directory is removed on exit.
In a pod (examples/kubernetes), --listen 0.0.0.0 serves its Service.`,
		Example: "  faultline shop postgres --port 15432\n  faultline run examples/experiments/cache-dies.yaml --var BUILD=fragile --var DB_URL=... ",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return serveUntilSignal(c, func(ctx context.Context) error {
				pg, err := shop.StartPostgres(ctx, shop.PostgresConfig{Port: port, Dir: dir, Listen: listen})
				if err != nil {
					return err
				}
				defer pg.Stop()
				if err := pg.CreateDatabase(ctx, "shop"); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "PostgreSQL ready (pid %d, max_connections %d); for the experiments:\n  --var DB_URL=%s --var DB_PIDFILE=%s --var DB_MAX_CONNECTIONS=%d\nCtrl-C stops it.\n",
					pg.PID(), pg.MaxConnections, pg.URL("shop"), pg.PIDFile, pg.MaxConnections)
				<-ctx.Done()
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "`port` (default: a free one)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1", "`addresses` to take connections on (PostgreSQL's listen_addresses)")
	cmd.Flags().StringVar(&dir, "dir", "", "data `directory` to keep (default: a temporary one, removed on exit)")
	return cmd
}
