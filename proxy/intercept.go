package proxy

import (
	"context"
	"fmt"
	"net"
)

// The hooks an intercept uses (Config.Listener, Config.Dial): a proxy whose
// listener was opened inside another network namespace, and whose upstream
// is each client's own original destination, dialled from that namespace.
// Everything between the two sockets (toxics, HTTP stage, metrics) is the
// same as for any proxy.

// openListener listens on Listen, or through Config.Listener.
func (p *Proxy) openListener() (*net.TCPListener, error) {
	if p.listenFn == nil {
		ln, err := net.Listen("tcp", p.listen)
		if err != nil {
			return nil, err
		}
		return ln.(*net.TCPListener), nil
	}
	ln, err := p.listenFn()
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("proxy %s: listener is a %T, want a *net.TCPListener", p.name, ln)
	}
	return tl, nil
}

// dialUpstream opens the upstream of one client: a dial of upstream, or
// Config.Dial, within the dial timeout.
func (p *Proxy) dialUpstream(ctx context.Context, client *net.TCPConn, upstream string) (*net.TCPConn, error) {
	if p.dialFn == nil {
		d := net.Dialer{Timeout: p.dialTimeout}
		c, err := d.DialContext(ctx, "tcp", upstream)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	return p.dialFn(ctx, client)
}
