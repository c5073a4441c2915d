package netfault

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Dest is where a fault applies: addresses, a port, or both. A zero Prefix
// is every address; a zero Port every port (and every protocol).
type Dest struct {
	Prefix netip.Prefix
	Port   uint16
}

func (d Dest) String() string {
	host := ""
	if d.Prefix.IsValid() {
		host = d.Prefix.String()
		if d.Prefix.IsSingleIP() {
			host = d.Prefix.Addr().String()
		}
	}
	if d.Port == 0 {
		return host
	}
	if d.Prefix.IsValid() && d.Prefix.Addr().Is6() {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(d.Port))
}

// MarshalText writes the form ParseDest reads.
func (d Dest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads the form ParseDest reads.
func (d *Dest) UnmarshalText(b []byte) error {
	v, err := ParseDest(string(b))
	if err == nil {
		*d = v
	}
	return err
}

// ParseDest reads IP, CIDR, IP:PORT, CIDR:PORT or :PORT; an IPv6 address
// or prefix with a port is bracketed: [::1]:80, [fd00::/8]:80.
func ParseDest(s string) (Dest, error) {
	d, err := parseDest(strings.TrimSpace(s))
	if err != nil {
		return Dest{}, fmt.Errorf("destination %q: %w", s, err)
	}
	return d, nil
}

func parseDest(s string) (Dest, error) {
	if s == "" {
		return Dest{}, errors.New("empty: want IP, CIDR, IP:PORT, CIDR:PORT or :PORT")
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Dest{}, errors.New("[ without ]")
		}
		host, port = s[1:end], s[end+1:]
		if port == "" {
			return Dest{}, errors.New("brackets without a port")
		}
		if !strings.HasPrefix(port, ":") {
			return Dest{}, errors.New("want ]:PORT after the bracketed address")
		}
		port = port[1:]
		if !strings.Contains(host, ":") {
			return Dest{}, errors.New("brackets are for IPv6 only")
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return Dest{}, errors.New("no port after ':'")
		}
	}
	var d Dest
	if port != "" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Dest{}, fmt.Errorf("port %q: want 1 to 65535", port)
		}
		d.Port = uint16(p)
	}
	if host == "" {
		if d.Port == 0 {
			return Dest{}, errors.New("no address and no port")
		}
		return d, nil
	}
	if strings.Contains(host, "/") {
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return Dest{}, fmt.Errorf("prefix %q: not a CIDR prefix", host)
		}
		d.Prefix = p.Masked()
	} else {
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return Dest{}, fmt.Errorf("%q is not an IP address (resolve names first)", host)
		}
		d.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if d.Prefix.Addr().Is4In6() {
		return Dest{}, fmt.Errorf("%q is IPv4-mapped: write the IPv4 address", host)
	}
	return d, nil
}

// ParseDests reads several destinations; the errors of all bad ones are
// joined.
func ParseDests(ss []string) ([]Dest, error) {
	var out []Dest
	var errs []error
	for _, s := range ss {
		d, err := ParseDest(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}
