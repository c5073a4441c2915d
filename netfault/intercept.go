package netfault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/proxy"
)

// Mark is the socket mark (SO_MARK) of the connections an intercept opens
// to the original destinations; its redirect leaves them alone.
const Mark = 0x666c74 // "flt"

// ListenTCP listens on addr (HOST:PORT) inside ns.
func ListenTCP(ns NS, addr string) (*net.TCPListener, error) {
	var ln net.Listener
	err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// ListenUDP opens a UDP socket on addr (HOST:PORT) inside ns.
func ListenUDP(ns NS, addr string) (*net.UDPConn, error) {
	var pc net.PacketConn
	err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// DialTCP connects to addr from a socket of ns marked mark (0: unmarked),
// within ctx. Only the socket's creation runs on a thread inside ns: the
// connect itself waits on Go's poller like any other.
func DialTCP(ctx context.Context, ns NS, mark uint32, addr netip.AddrPort) (*net.TCPConn, error) {
	fam, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()})
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		fam, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	var fd int
	err := ns.Do(func() (err error) {
		fd, err = unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: socket: %w", addr, err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("dial %s: mark: %w", addr, err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: os.NewSyscallError("connect", err)}
	}
	f := os.NewFile(uintptr(fd), "tcp") // owns fd; polled, as fd is non-blocking
	defer f.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var connErr error
	werr := rc.Write(func(fd uintptr) bool {
		n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = err
		case n != 0:
			connErr = unix.Errno(n)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false // not connected yet: wait until writable
			}
		}
		return true
	})
	if werr == nil {
		werr = connErr
	}
	if werr != nil {
		if ctx.Err() != nil {
			werr = ctx.Err()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: werr}
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// OriginalDst returns where a redirected connection was going:
// getsockopt(SOL_IP, SO_ORIGINAL_DST).
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var sa unix.RawSockaddrInet4
	var serr error
	err = rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(sa))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			serr = os.NewSyscallError("getsockopt SO_ORIGINAL_DST", e)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	port := uint16(sa.Port>>8 | sa.Port<<8) // network order
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), nil
}

// InterceptTCP sends the TCP connections that processes in ns open to
// `to` through a faultline proxy: it opens a listener on 127.0.0.1 inside
// ns, starts a proxy made from cfg whose upstream connections go, from ns
// and marked with Mark, to each connection's original destination, and
// then injects the Redirect (journaled as InjectOp(ns, run, fault)). Add
// toxics to the proxy returned as to any. To end it: Stop the proxy (the
// connections it carries end, seen by their clients), then Undo the Op:
// once the namespace has no nat chain left, the packets of a connection
// closed later are not translated back and its client never sees it end.
// A stopped proxy, restarted (Toxiproxy's enabled), listens on the same
// port again.
func InterceptTCP(ctx context.Context, ns NS, run, fault string, to []Dest, cfg proxy.Config, j Journal) (*proxy.Proxy, Op, error) {
	first, err := ListenTCP(ns, "127.0.0.1:0")
	if err != nil {
		return nil, Op{}, err
	}
	port := uint16(first.Addr().(*net.TCPAddr).Port)
	cfg.Listen = first.Addr().String()
	if cfg.Upstream == "" {
		cfg.Upstream = "original destination in " + ns.Path
	}
	cfg.Listener = func() (net.Listener, error) {
		if ln := first; ln != nil {
			first = nil
			return ln, nil
		}
		return ListenTCP(ns, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	}
	cfg.Dial = func(ctx context.Context, client *net.TCPConn) (*net.TCPConn, error) {
		dst, err := OriginalDst(client)
		if err != nil {
			return nil, err
		}
		return DialTCP(ctx, ns, Mark, dst)
	}
	p := proxy.New(cfg)
	if err := p.Start(); err != nil {
		if first != nil {
			first.Close()
		}
		return nil, Op{}, err
	}
	op, err := Inject(ctx, ns, run, fault, Redirect{To: to, Protocol: TCP, Port: port, Mark: Mark}, j)
	if err != nil {
		p.Stop()
		return nil, op, err
	}
	return p, op, nil
}

// InterceptDNS sends the DNS queries (UDP and TCP port 53, to any IPv4
// resolver) that processes in ns make to a faultline DNS server made from
// cfg, whose sockets are on 127.0.0.1 inside ns, and journals and injects
// the Redirect as InterceptTCP does. It is refused (ErrHostNamespace) for
// the host's own namespace, whose resolver everything on the machine
// shares. To end it: Undo the Op, then Stop the server.
func InterceptDNS(ctx context.Context, ns NS, run, fault string, cfg dnsfault.Config, j Journal) (*dnsfault.Server, Op, error) {
	if host, err := ns.IsHost(); err != nil {
		return nil, Op{}, err
	} else if host {
		return nil, Op{}, fmt.Errorf("dns intercept in %s: %w", ns, ErrHostNamespace)
	}
	return interceptDNS(ctx, ns, run, fault, cfg, j)
}

// InterceptDNSHere is InterceptDNS in faultline's own namespace, which the
// caller knows is not the host's: an agent in a pod, where PID 1 (the pod's
// init, in the pod's namespace) makes IsHost say yes. The server's own
// queries upstream are marked, so that they pass.
func InterceptDNSHere(ctx context.Context, run, fault string, cfg dnsfault.Config, j Journal) (*dnsfault.Server, Op, error) {
	ns, err := OpenNS("/proc/self/ns/net")
	if err != nil {
		return nil, Op{}, err
	}
	cfg.Mark = Mark
	return interceptDNS(ctx, ns, run, fault, cfg, j)
}

func interceptDNS(ctx context.Context, ns NS, run, fault string, cfg dnsfault.Config, j Journal) (*dnsfault.Server, Op, error) {
	var pc *net.UDPConn
	var ln *net.TCPListener
	for attempt := 0; ; attempt++ {
		var err error
		if pc, err = ListenUDP(ns, "127.0.0.1:0"); err != nil {
			return nil, Op{}, err
		}
		if ln, err = ListenTCP(ns, pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			return nil, Op{}, err
		}
	}
	cfg.PacketConn, cfg.Listener = pc, ln
	s := dnsfault.New(cfg)
	if err := s.Start(); err != nil {
		pc.Close()
		ln.Close()
		return nil, Op{}, err
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	op, err := Inject(ctx, ns, run, fault, Redirect{To: []Dest{{Port: 53}}, Protocol: All, Port: port, Mark: Mark}, j)
	if err != nil {
		s.Stop()
		return nil, op, err
	}
	return s, op, nil
}
