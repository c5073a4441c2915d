package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// A doer sends the requests of one Request.
type doer interface {
	// do sends one request and waits for its answer until deadline: code
	// is the Result's Code, err why the request failed (nil if it did not).
	do(deadline time.Time) (code int, err error)
}

// doers are a run's doers, one a Request, and what they share: an HTTP
// transport, Redis clients, PostgreSQL pools and gRPC connections, each
// opened once for all the Requests that name the same server.
type doers struct {
	doers   []doer
	kinds   []Kind
	closers []func()

	transport *transport
	redis     map[redisKey]*redisClient
	sql       map[sqlKey]*sqlPool
	grpc      map[string]*grpcConn
}

// newDoers checks every Request and opens what they need; an error names
// every Request that is wrong, and leaves nothing open.
func newDoers(reqs []Request, timeout time.Duration) (*doers, error) {
	ds := &doers{
		redis: map[redisKey]*redisClient{},
		sql:   map[sqlKey]*sqlPool{},
		grpc:  map[string]*grpcConn{},
	}
	var errs []error
	for i, r := range reqs {
		d, err := ds.add(r, timeout)
		if err != nil {
			what := fmt.Sprintf("load: requests[%d]", i)
			if r.Name != "" {
				what += fmt.Sprintf(" (%s)", r.Name)
			}
			for _, err := range unjoin(err) {
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
			}
			continue
		}
		ds.doers = append(ds.doers, d)
		ds.kinds = append(ds.kinds, r.Kind())
	}
	if len(errs) > 0 {
		ds.close()
		return nil, errors.Join(errs...)
	}
	return ds, nil
}

func (ds *doers) add(r Request, timeout time.Duration) (doer, error) {
	set := 0
	for _, p := range []bool{r.TCP != nil, r.Redis != nil, r.SQL != nil, r.DNS != nil, r.GRPC != nil} {
		if p {
			set++
		}
	}
	if set > 1 {
		return nil, errors.New("more than one of tcp, redis, sql, dns and grpc")
	}
	if k := r.Kind(); k != KindHTTP && (r.Method != "" || r.URL != "" || r.Header != nil || r.Body != nil) {
		return nil, fmt.Errorf("a %s request with HTTP fields (method, url, header, body)", k)
	}
	switch r.Kind() {
	case KindTCP:
		return newTCPDoer(r.TCP)
	case KindRedis:
		return ds.redisDoer(r.Redis, timeout)
	case KindSQL:
		return ds.sqlDoer(r.SQL)
	case KindDNS:
		return newDNSDoer(r.DNS, timeout)
	case KindGRPC:
		return ds.grpcDoer(r.GRPC)
	}
	if ds.transport == nil {
		ds.transport = newTransport(timeout)
		ds.closers = append(ds.closers, ds.transport.close)
	}
	return ds.transport.add(r)
}

// close closes what the doers opened, the last first.
func (ds *doers) close() {
	for i := len(ds.closers) - 1; i >= 0; i-- {
		ds.closers[i]()
	}
}

// unjoin is the errors errors.Join made err of, or err.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// describe says what err was; a timeout, of any kind, in the same words.
func describe(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return timeoutError(timeout)
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return timeoutError(timeout)
	}
	return err.Error()
}

// timeoutError is the Err of a request that timed out.
func timeoutError(d time.Duration) string {
	return fmt.Sprintf("timeout after %v: %v", d, context.DeadlineExceeded)
}

// checkAddr checks a HOST:PORT.
func checkAddr(field, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%s: want HOST:PORT, got %q", field, addr)
	}
	return nil
}
