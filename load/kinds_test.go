package load_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/internal/freeport"
	"github.com/faultline/faultline/load"
)

// kindCase is one request of a kind and what each of its results must be.
type kindCase struct {
	name     string
	req      load.Request
	timeout  time.Duration // zero: 2 s
	wantCode int
	// wantErr is what Err must hold; empty: the request must not fail.
	wantErr string
}

// checkKinds runs each case for a moment at 40/s and checks every result.
func checkKinds(t *testing.T, cases []kindCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			timeout := c.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			res := run(t, load.Config{Rate: 40, Timeout: timeout, Requests: []load.Request{c.req}}, 250*time.Millisecond)
			if len(res) < 3 {
				t.Fatalf("%d results", len(res))
			}
			for _, r := range res {
				failed := c.wantErr != ""
				if r.Kind != c.req.Kind() || r.Failed() != failed || r.Code != c.wantCode || !strings.Contains(r.Err, c.wantErr) || (!failed && r.Err != "") {
					t.Fatalf("result %+v, want kind %v, code %d, failed %v, error holding %q", r, c.req.Kind(), c.wantCode, failed, c.wantErr)
				}
				if c.timeout > 0 && failed && strings.Contains(c.wantErr, "timeout") && r.Latency < c.timeout {
					t.Fatalf("timed out after %v, before the %v timeout", r.Latency, c.timeout)
				}
			}
		})
	}
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

// tcpServer serves each connection with serve on a loopback port until the
// test ends, and counts the connections.
func tcpServer(t *testing.T, serve func(net.Conn)) (addr string, conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan int, 1)
	accepted <- 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- <-accepted + 1
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), func() int { n := <-accepted; accepted <- n; return n }
}

func TestTCP(t *testing.T) {
	ping, pingConns := tcpServer(t, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line == "PING\r\n" {
			_, _ = io.WriteString(c, "+PONG\r\n")
		}
	})
	banner, _ := tcpServer(t, func(c net.Conn) { _, _ = io.WriteString(c, "SSH-2.0-test\r\n") })
	hangUp, _ := tcpServer(t, func(c net.Conn) { _, _ = bufio.NewReader(c).ReadString('\n') })
	silent, _ := tcpServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	checkKinds(t, []kindCase{
		{name: "connect only", req: load.Request{TCP: &load.TCP{Addr: silent}}},
		{name: "reply begins as expected", req: load.Request{TCP: &load.TCP{Addr: ping, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}}},
		{name: "reply matches", req: load.Request{TCP: &load.TCP{Addr: ping, Send: []byte("PING\r\n"), ExpectRegexp: `^\+P[O]NG\r\n$`}}},
		{name: "banner", req: load.Request{TCP: &load.TCP{Addr: banner, ExpectRegexp: `^SSH-2\.0-`}}},
		{name: "another reply", req: load.Request{TCP: &load.TCP{Addr: ping, Send: []byte("PING\r\n"), Expect: []byte("+OK")}}, wantErr: `does not begin with "+OK"`},
		{name: "no match", req: load.Request{TCP: &load.TCP{Addr: banner, ExpectRegexp: `^HTTP/`}}, wantErr: "ends without a match"},
		{name: "closed without a reply", req: load.Request{TCP: &load.TCP{Addr: hangUp, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}}, wantErr: "ends before"},
		{name: "refused", req: load.Request{TCP: &load.TCP{Addr: closedAddr(t)}}, wantErr: "connection refused"},
		{name: "no reply in time", req: load.Request{TCP: &load.TCP{Addr: silent, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}}, timeout: 100 * time.Millisecond, wantErr: "timeout after 100ms"},
	})
	// A connection a request: the server saw as many as it answered.
	before := pingConns()
	res := run(t, load.Config{Rate: 40, Requests: []load.Request{{TCP: &load.TCP{Addr: ping, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}}}}, 250*time.Millisecond)
	if n := pingConns() - before; len(res) < 3 || n != len(res) {
		t.Fatalf("%d requests on %d connections, want one each", len(res), n)
	}
}

// startRedis starts Debian's redis-server on a free loopback port until
// the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	bin := shop.RedisServer()
	need(t, "redis-server", bin != "")
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args, err := shop.RedisArgs(addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args[1:]...)
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(c, "PING\r\n")
			reply, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if reply == "+PONG\r\n" {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s not ready: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, with a deadline
	}
}

func TestRedis(t *testing.T) {
	addr := startRedis(t)
	redis := func(args ...string) load.Request { return load.Request{Redis: &load.Redis{Addr: addr, Command: args}} }
	checkKinds(t, []kindCase{
		{name: "SET", req: redis("SET", "k", "v")},
		{name: "GET", req: redis("GET", "k")},
		{name: "a nil reply is no error", req: redis("GET", "missing")},
		{name: "an error reply is one", req: redis("INCR", "k"), wantErr: "error reply: ERR value is not an integer"},
		{name: "unknown command", req: redis("NOSUCH"), wantErr: "error reply: ERR unknown command"},
		{name: "another database", req: load.Request{Redis: &load.Redis{Addr: addr, DB: 3, Command: []string{"GET", "k"}}}},
		{name: "no server", req: load.Request{Redis: &load.Redis{Addr: closedAddr(t), Command: []string{"PING"}}}, wantErr: "connection refused"},
	})
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestSQL(t *testing.T) {
	_, err := shop.FindPostgres()
	need(t, "PostgreSQL", err == nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := shop.StartPostgres(ctx, shop.PostgresConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	dsn := pg.URL("postgres")
	sql := func(q string, args ...any) load.Request {
		return load.Request{SQL: &load.SQL{DSN: dsn, Query: q, Args: args, MaxConns: 4}}
	}
	checkKinds(t, []kindCase{
		{name: "select", req: sql("SELECT generate_series(1, 100)")},
		{name: "with arguments", req: sql("SELECT $1::int + 1", 41)},
		{name: "a statement", req: sql("CREATE TABLE IF NOT EXISTS t (x int)")},
		{name: "the query fails", req: sql("SELECT * FROM no_such_table"), wantErr: "SQLSTATE 42P01"},
		{name: "a failure at the end", req: sql("SELECT 1 / (x - 3) FROM generate_series(1, 5) AS x"), wantErr: "division by zero"},
		{name: "slower than the timeout", req: sql("SELECT pg_sleep(1)"), timeout: 100 * time.Millisecond, wantErr: "timeout after 100ms"},
	})
}

func TestDNS(t *testing.T) {
	rules, err := dnsfault.ParseRules([]string{"fail.test=SERVFAIL", "gone.test=NXDOMAIN", "no.test=REFUSED", "slow.test=TIMEOUT"})
	if err != nil {
		t.Fatal(err)
	}
	srv := dnsfault.New(dnsfault.Config{Listen: "127.0.0.1:0", Rules: rules, Records: map[string][]net.IP{"shop.test": {net.IPv4(127, 0, 0, 1)}}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	q := func(name, typ string, expect bool) load.Request {
		return load.Request{DNS: &load.DNS{Server: srv.Addr(), Name: name, Type: typ, ExpectAnswer: expect}}
	}
	checkKinds(t, []kindCase{
		{name: "an answer", req: q("shop.test", "A", true)},
		{name: "over TCP", req: load.Request{DNS: &load.DNS{Server: srv.Addr(), Name: "shop.test.", Net: "tcp", ExpectAnswer: true}}},
		{name: "no record of the type, not expected", req: q("shop.test", "AAAA", false)},
		{name: "no record of the type, expected", req: q("shop.test", "aaaa", true), wantErr: "no AAAA record"},
		{name: "NXDOMAIN, not expected", req: q("gone.test", "A", false), wantCode: 3},
		{name: "NXDOMAIN, expected", req: q("gone.test", "A", true), wantCode: 3, wantErr: "NXDOMAIN"},
		{name: "SERVFAIL", req: q("fail.test", "A", false), wantCode: 2, wantErr: "SERVFAIL"},
		{name: "REFUSED", req: q("no.test", "A", false), wantCode: 5, wantErr: "REFUSED"},
		{name: "no answer", req: q("slow.test", "A", false), timeout: 100 * time.Millisecond, wantCode: -1, wantErr: "timeout after 100ms"},
	})
}

// echoDesc is a service without generated stubs: test.Echo/Say answers
// the StringValue it is given; test.Echo/Fail fails with UNAVAILABLE;
// test.Echo/Slow answers after a second, whatever the call's deadline.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Say", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if in.Value != "hello" {
				return nil, status.Errorf(codes.InvalidArgument, "said %q", in.Value)
			}
			return in, nil
		}},
		{MethodName: "Fail", Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
			return nil, status.Error(codes.Unavailable, "down for the test")
		}},
		{MethodName: "Slow", Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
			time.Sleep(time.Second) // past any deadline of the test's: the client gives up first
			return new(wrapperspb.StringValue), nil
		}},
	},
}

func TestGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("shop", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("payments", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	srv.RegisterService(&echoDesc, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Error(err)
		}
	}()
	hello, err := proto.Marshal(wrapperspb.String("hello"))
	if err != nil {
		t.Fatal(err)
	}
	bye, _ := proto.Marshal(wrapperspb.String("bye"))
	target := ln.Addr().String()
	call := func(g load.GRPC) load.Request { g.Target = target; return load.Request{GRPC: &g} }
	checkKinds(t, []kindCase{
		{name: "health of the server", req: call(load.GRPC{})},
		{name: "health of a service", req: call(load.GRPC{Service: "shop"})},
		{name: "NOT_SERVING", req: call(load.GRPC{Service: "payments"}), wantErr: "health: NOT_SERVING"},
		{name: "unknown service", req: call(load.GRPC{Service: "nope"}), wantCode: int(codes.NotFound), wantErr: "NotFound"},
		{name: "a method without stubs", req: call(load.GRPC{Method: "/test.Echo/Say", Body: hello})},
		{name: "a status that is not OK", req: call(load.GRPC{Method: "/test.Echo/Say", Body: bye}), wantCode: int(codes.InvalidArgument), wantErr: `said "bye"`},
		{name: "UNAVAILABLE", req: call(load.GRPC{Method: "/test.Echo/Fail"}), wantCode: int(codes.Unavailable), wantErr: "down for the test"},
		{name: "an unknown method", req: call(load.GRPC{Method: "/test.Echo/Nope"}), wantCode: int(codes.Unimplemented), wantErr: "Unimplemented"},
		{name: "slower than the timeout", req: call(load.GRPC{Method: "/test.Echo/Slow"}), timeout: 100 * time.Millisecond, wantCode: int(codes.DeadlineExceeded), wantErr: "timeout after 100ms"},
	})
}

// One run may mix kinds; each result keeps its request's name and kind.
func TestKindsMixed(t *testing.T) {
	tcp, _ := tcpServer(t, func(c net.Conn) {})
	srv := dnsfault.New(dnsfault.Config{Listen: "127.0.0.1:0", Records: map[string][]net.IP{"shop.test": {net.IPv4(127, 0, 0, 1)}}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	res := run(t, load.Config{Rate: 200, Seed: 3, Requests: []load.Request{
		{Name: "connect", TCP: &load.TCP{Addr: tcp}},
		{Name: "resolve", DNS: &load.DNS{Server: srv.Addr(), Name: "shop.test"}},
	}}, 500*time.Millisecond)
	byName := map[string]int{}
	for _, r := range res {
		want := map[string]load.Kind{"connect": load.KindTCP, "resolve": load.KindDNS}[r.Request]
		if r.Kind != want || r.Failed() {
			t.Fatalf("result %+v", r)
		}
		byName[r.Request]++
	}
	if byName["connect"] < 20 || byName["resolve"] < 20 {
		t.Fatalf("results by name %v", byName)
	}
}

// A Config that cannot run says what is wrong with every request, where,
// and sends nothing.
func TestInvalidRequests(t *testing.T) {
	err := load.Run(context.Background(), load.Config{Rate: 10, Requests: []load.Request{
		{Name: "a", URL: "ftp://x/"},
		{Name: "b", TCP: &load.TCP{Addr: "nowhere", ExpectRegexp: "("}},
		{Redis: &load.Redis{Addr: "127.0.0.1:1"}},
		{SQL: &load.SQL{DSN: "postgres://x:bad port/", Query: "SELECT 1"}},
		{DNS: &load.DNS{Server: "127.0.0.1:53", Name: "x.test", Type: "NOPE", Net: "sctp"}},
		{GRPC: &load.GRPC{Target: "127.0.0.1:1", Method: "Check"}},
		{URL: "http://x/", Redis: &load.Redis{Addr: "127.0.0.1:1", Command: []string{"PING"}}},
		{TCP: &load.TCP{Addr: "127.0.0.1:1"}, DNS: &load.DNS{Server: "127.0.0.1:53", Name: "x"}},
	}}, func(load.Result) { t.Error("a request was sent") })
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"requests[0] (a): url: want an http or https URL",
		"requests[1] (b): tcp.addr: want HOST:PORT",
		"requests[1] (b): tcp.expect_regexp: error parsing regexp",
		"requests[2]: redis.command: empty",
		"requests[3]: sql.dsn:",
		"requests[4]: dns.type: unknown record type \"NOPE\"",
		"requests[4]: dns.net: want udp or tcp",
		"requests[5]: grpc.method: want /package.Service/Method",
		"requests[6]: a redis request with HTTP fields",
		"requests[7]: more than one of tcp, redis, sql, dns and grpc",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
}
