package load

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// GRPC is one unary call to a gRPC server, through grpc-go, in plaintext
// (HTTP/2 without TLS), on one connection for the run (one for all
// Requests with the same Target, as a gRPC client keeps). With Method
// empty it is the standard health check, grpc.health.v1.Health/Check of
// Service, which must answer SERVING; otherwise it calls Method with Body
// as the request message's bytes in protobuf's wire format (empty: an
// empty message) and reads the answer without decoding it, so no stubs
// are needed. A status other than OK is an error; so is a health check
// answering NOT_SERVING or another status. Its Result's Code is the gRPC
// status code (0 OK, 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE, ...).
type GRPC struct {
	// Target is HOST:PORT, or any target name grpc.NewClient takes.
	Target string
	// Service is the service the health check asks about; empty: the
	// server as a whole.
	Service string
	// Method is the full name of a unary method, "/package.Service/Method".
	Method string
	// Body is the request message, encoded; only with Method.
	Body []byte
}

type grpcConn struct{ c *grpc.ClientConn }

type grpcDoer struct {
	c      *grpc.ClientConn
	health healthpb.HealthClient
	r      *GRPC
}

func (ds *doers) grpcDoer(r *GRPC) (doer, error) {
	var errs []error
	if r.Target == "" {
		errs = append(errs, errors.New("grpc.target: empty"))
	}
	if r.Method != "" {
		if r.Service != "" {
			errs = append(errs, errors.New("grpc: service is for the health check, not with method"))
		}
		if svc, m, ok := strings.Cut(strings.TrimPrefix(r.Method, "/"), "/"); !strings.HasPrefix(r.Method, "/") || !ok || svc == "" || m == "" || strings.Contains(m, "/") {
			errs = append(errs, fmt.Errorf("grpc.method: want /package.Service/Method, got %q", r.Method))
		}
	} else if len(r.Body) > 0 {
		errs = append(errs, errors.New("grpc: body without method"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	gc := ds.grpc[r.Target]
	if gc == nil {
		c, err := grpc.NewClient(r.Target, grpc.WithTransportCredentials(insecure.NewCredentials())) // connects lazily
		if err != nil {
			return nil, fmt.Errorf("grpc.target: %w", err)
		}
		gc = &grpcConn{c: c}
		ds.grpc[r.Target] = gc
		ds.closers = append(ds.closers, func() { _ = c.Close() })
	}
	return &grpcDoer{c: gc.c, health: healthpb.NewHealthClient(gc.c), r: r}, nil
}

func (d *grpcDoer) do(deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if d.r.Method == "" {
		resp, err := d.health.Check(ctx, &healthpb.HealthCheckRequest{Service: d.r.Service})
		if err != nil {
			return grpcError(err)
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return int(codes.OK), fmt.Errorf("health: %v", s)
		}
		return int(codes.OK), nil
	}
	var reply []byte
	if err := d.c.Invoke(ctx, d.r.Method, &d.r.Body, &reply, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return grpcError(err)
	}
	return int(codes.OK), nil
}

// grpcError is a failed call's code and error; a deadline is a timeout.
func grpcError(err error) (int, error) {
	code := status.Code(err)
	if code == codes.DeadlineExceeded {
		return int(code), fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return int(code), err
}

// rawCodec sends and receives messages as their encoded bytes (a
// *[]byte), under protobuf's content subtype, so a method can be called
// without its stubs.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
