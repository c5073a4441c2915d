package probe

import (
	"context"
	"net"
)

// tcpProbe passes when a TCP connection to the address opens.
func tcpProbe(ctx context.Context, _ *Prober, s *Spec) (Result, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Address)
	if err != nil {
		return Result{}, err
	}
	c.Close()
	return Result{Passed: true, Detail: "connected"}, nil
}
