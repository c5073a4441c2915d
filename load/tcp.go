package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"time"
)

// TCP is a request that connects to Addr, writes Send (if any), reads
// until the reply is the one expected (if Expect or ExpectRegexp says
// one), and closes the connection. Each request has a connection of its
// own: connecting is what TCP faults (a proxy down, a reset, a partition,
// a full accept queue) break first, and a byte stream has no message
// boundaries by which the next request could safely reuse it. It fails
// when the connection cannot be made, a write fails, the reply is not the
// one expected, or the timeout passes first. Its Result's Code is 0.
type TCP struct {
	// Addr is HOST:PORT.
	Addr string
	// Send is written once connected; empty: nothing.
	Send []byte
	// Expect is what the reply must begin with; empty: no reply is read.
	Expect []byte
	// ExpectRegexp is a regular expression (RE2 syntax) that the reply, as
	// read so far, must match within maxReply bytes; at most one of it and
	// Expect.
	ExpectRegexp string
}

// maxReply bounds the reply a TCP request reads for ExpectRegexp.
const maxReply = 64 << 10

type tcpDoer struct {
	r  *TCP
	re *regexp.Regexp
}

func newTCPDoer(r *TCP) (doer, error) {
	var errs []error
	if err := checkAddr("tcp.addr", r.Addr); err != nil {
		errs = append(errs, err)
	}
	d := &tcpDoer{r: r}
	if r.ExpectRegexp != "" {
		if len(r.Expect) > 0 {
			errs = append(errs, errors.New("tcp: expect and expect_regexp both given, want at most one"))
		}
		re, err := regexp.Compile(r.ExpectRegexp)
		if err != nil {
			errs = append(errs, fmt.Errorf("tcp.expect_regexp: %w", err))
		}
		d.re = re
	}
	return d, errors.Join(errs...)
}

func (d *tcpDoer) do(deadline time.Time) (int, error) {
	dialer := net.Dialer{Deadline: deadline}
	c, err := dialer.Dial("tcp", d.r.Addr)
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(deadline)
	if len(d.r.Send) > 0 {
		if _, err := c.Write(d.r.Send); err != nil {
			return 0, err
		}
	}
	if len(d.r.Expect) == 0 && d.re == nil {
		return 0, nil
	}
	return 0, d.expect(c)
}

// expect reads the reply until it is the one expected, or cannot be.
func (d *tcpDoer) expect(c net.Conn) error {
	want := d.r.Expect
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxReply {
				return fmt.Errorf("reply %q... matches no %q in %d bytes", buf[:64], d.r.ExpectRegexp, maxReply)
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if d.re == nil {
			m := min(len(buf), len(want))
			if !bytes.Equal(buf[:m], want[:m]) {
				return fmt.Errorf("reply %q does not begin with %q", buf[:min(len(buf), len(want)+16)], want)
			}
			if len(buf) >= len(want) {
				return nil
			}
		} else if d.re.Match(buf) {
			return nil
		}
		if err == io.EOF {
			if d.re == nil {
				return fmt.Errorf("reply %q ends before %q", buf, want)
			}
			return fmt.Errorf("reply %q ends without a match of %q", buf[:min(len(buf), 64)], d.r.ExpectRegexp)
		}
		if err != nil {
			return err
		}
	}
}
