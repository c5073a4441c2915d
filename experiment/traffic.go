package experiment

import (
	"encoding/base64"
	"net"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/load"
)

// The keys of each kind of request beyond HTTP.
var (
	tcpKeys        = []string{"addr", "send", "expect", "expect_regexp"}
	redisKeys      = []string{"addr", "command", "db", "username", "password"}
	sqlKeys        = []string{"dsn", "query", "args", "max_conns"}
	dnsRequestKeys = []string{"server", "name", "type", "net", "expect_answer"}
	grpcKeys       = []string{"target", "service", "method", "body_base64"}
)

// requestKind reads a request's kind beyond HTTP (tcp:, redis:, sql:,
// dns:, grpc:), at most one, and none with an HTTP request's keys. It
// reports whether the entry has more than one kind, which says all there
// is to say about it.
func (d *decoder) requestKind(req *Request, rf fields, r *yaml.Node, field string) (several bool) {
	var given []string
	for _, k := range []string{"tcp", "redis", "sql", "dns", "grpc"} {
		if rf.Get(k) != nil {
			given = append(given, k)
		}
	}
	if len(given) == 0 {
		return false
	}
	if len(given) > 1 {
		d.Errorf(r, field, "one kind of request per entry, got %s", strings.Join(given, " and "))
		return true
	}
	for _, k := range []string{"method", "url", "headers", "body"} {
		if rf.Get(k) != nil {
			d.Errorf(rf.Get(k), field+"."+k, "%s is an HTTP request's; this one is %s", k, given[0])
		}
	}
	kind := given[0]
	n, at := rf.Get(kind), field+"."+kind
	str := func(f fields, k string) string {
		if v := f.Get(k); v != nil {
			return d.Str(v, at+"."+k)
		}
		return ""
	}
	need := func(f fields, k, example string) {
		if f.Get(k) == nil {
			d.Errorf(n, at+"."+k, "required, e.g. %s", example)
		}
	}
	addr := func(f fields, k string) string {
		v := str(f, k)
		if v != "" && !hostPort(v) {
			d.Errorf(f.Get(k), at+"."+k, "want HOST:PORT, got %q", v)
		}
		return v
	}
	switch kind {
	case "tcp":
		f := d.Mapping(n, at, tcpKeys...)
		need(f, "addr", "addr: 127.0.0.1:6379")
		req.TCP = &load.TCP{Addr: addr(f, "addr"), Send: []byte(str(f, "send")), Expect: []byte(str(f, "expect")), ExpectRegexp: str(f, "expect_regexp")}
		if f.Get("expect") != nil && f.Get("expect_regexp") != nil {
			d.Errorf(n, at, "expect or expect_regexp, not both")
		}
	case "redis":
		f := d.Mapping(n, at, redisKeys...)
		need(f, "addr", "addr: 127.0.0.1:6379")
		need(f, "command", "command: [GET, key]")
		req.Redis = &load.Redis{Addr: addr(f, "addr"), Username: str(f, "username"), Password: str(f, "password")}
		if v := f.Get("command"); v != nil {
			req.Redis.Command = d.StrList(v, at+".command", false)
		}
		if v := f.Get("db"); v != nil {
			req.Redis.DB = d.Integer(v, at+".db")
		}
	case "sql":
		f := d.Mapping(n, at, sqlKeys...)
		need(f, "dsn", "dsn: postgres://app@127.0.0.1:5432/app")
		need(f, "query", "query: SELECT 1")
		req.SQL = &load.SQL{DSN: str(f, "dsn"), Query: str(f, "query")}
		if v := f.Get("args"); v != nil {
			for _, a := range d.StrList(v, at+".args", false) {
				req.SQL.Args = append(req.SQL.Args, a)
			}
		}
		if v := f.Get("max_conns"); v != nil {
			req.SQL.MaxConns = int32(d.Integer(v, at+".max_conns"))
		}
	case "dns":
		f := d.Mapping(n, at, dnsRequestKeys...)
		need(f, "server", "server: 127.0.0.1:53")
		need(f, "name", "name: payments.shop.internal")
		req.DNS = &load.DNS{Server: addr(f, "server"), Name: str(f, "name"), Type: strings.ToUpper(str(f, "type")), Net: str(f, "net")}
		if v := f.Get("expect_answer"); v != nil {
			req.DNS.ExpectAnswer = d.Boolean(v, at+".expect_answer")
		}
		if req.DNS.Net != "" && req.DNS.Net != "udp" && req.DNS.Net != "tcp" {
			d.Errorf(f.Get("net"), at+".net", "want udp or tcp, got %q", req.DNS.Net)
		}
	case "grpc":
		f := d.Mapping(n, at, grpcKeys...)
		need(f, "target", "target: 127.0.0.1:50051")
		req.GRPC = &load.GRPC{Target: str(f, "target"), Service: str(f, "service"), Method: str(f, "method")}
		if v := f.Get("body_base64"); v != nil {
			b, err := base64.StdEncoding.DecodeString(d.Str(v, at+".body_base64"))
			if err != nil {
				d.Errorf(v, at+".body_base64", "not base64: %v", err)
			}
			req.GRPC.Body = b
		}
		if req.GRPC.Method == "" && req.GRPC.Body != nil {
			d.Errorf(n, at+".body_base64", "a body goes with method: (the health check takes none)")
		}
	}
	return false
}

// requestAddrs are the addresses a request reaches, for OffLoopback.
func requestAddrs(r Request) []string {
	switch {
	case r.TCP != nil:
		return []string{r.TCP.Addr}
	case r.Redis != nil:
		return []string{r.Redis.Addr}
	case r.DNS != nil:
		return []string{r.DNS.Server}
	case r.GRPC != nil:
		return []string{r.GRPC.Target}
	case r.SQL != nil:
		return []string{dsnHost(r.SQL.DSN)}
	}
	return []string{r.URL}
}

// dsnHost is the host:port of a PostgreSQL DSN (a URL, or key=value).
func dsnHost(dsn string) string {
	if strings.Contains(dsn, "://") {
		return dsn
	}
	host, port := "", "5432"
	for _, kv := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "host":
			host = v
		case "port":
			port = v
		}
	}
	if host == "" || strings.HasPrefix(host, "/") {
		return "127.0.0.1:" + port // a Unix socket: this machine
	}
	return net.JoinHostPort(host, port)
}
