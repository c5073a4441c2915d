package load

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNS is one query to a DNS server, through miekg/dns, over a socket of
// its own. SERVFAIL, REFUSED, every RCODE but NOERROR and NXDOMAIN, and no
// answer before the timeout are errors; with ExpectAnswer, so are NXDOMAIN
// and an answer that holds no record of the type asked. Its Result's Code
// is the answer's RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED), -1
// without an answer.
type DNS struct {
	// Server is HOST:PORT.
	Server string
	// Name is the name asked, with or without its final dot.
	Name string
	// Type is the record type asked, by name (A, AAAA, MX, TXT, ...);
	// empty means A.
	Type string
	// Net is udp (the default) or tcp.
	Net string
	// ExpectAnswer makes NXDOMAIN and an empty answer errors.
	ExpectAnswer bool
}

type dnsDoer struct {
	r     *DNS
	name  string
	qtype uint16
	c     *dns.Client
}

func newDNSDoer(r *DNS, timeout time.Duration) (doer, error) {
	var errs []error
	if err := checkAddr("dns.server", r.Server); err != nil {
		errs = append(errs, err)
	}
	if _, ok := dns.IsDomainName(r.Name); !ok || r.Name == "" {
		errs = append(errs, fmt.Errorf("dns.name: not a domain name: %q", r.Name))
	}
	d := &dnsDoer{r: r, name: dns.Fqdn(r.Name), qtype: dns.TypeA}
	if r.Type != "" {
		t, ok := dns.StringToType[strings.ToUpper(r.Type)]
		if !ok {
			errs = append(errs, fmt.Errorf("dns.type: unknown record type %q", r.Type))
		}
		d.qtype = t
	}
	switch r.Net {
	case "", "udp", "tcp":
	default:
		errs = append(errs, fmt.Errorf("dns.net: want udp or tcp, got %q", r.Net))
	}
	d.c = &dns.Client{Net: r.Net, Timeout: timeout}
	return d, errors.Join(errs...)
}

func (d *dnsDoer) do(deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(d.name, d.qtype)
	in, _, err := d.c.ExchangeContext(ctx, m, d.r.Server)
	if err != nil {
		return -1, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		if d.r.ExpectAnswer && !d.answered(in) {
			return in.Rcode, fmt.Errorf("no %s record in the answer", dns.TypeToString[d.qtype])
		}
		return in.Rcode, nil
	case dns.RcodeNameError:
		if d.r.ExpectAnswer {
			return in.Rcode, errors.New("NXDOMAIN")
		}
		return in.Rcode, nil
	}
	return in.Rcode, errors.New(dns.RcodeToString[in.Rcode])
}

// answered reports whether in answers the question with a record of its
// type (any record, for ANY).
func (d *dnsDoer) answered(in *dns.Msg) bool {
	for _, rr := range in.Answer {
		if d.qtype == dns.TypeANY || rr.Header().Rrtype == d.qtype {
			return true
		}
	}
	return false
}
