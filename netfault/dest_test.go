package netfault

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"testing/quick"

	"github.com/google/go-cmp/cmp"
)

func TestParseDest(t *testing.T) {
	p := netip.MustParsePrefix
	for _, c := range []struct {
		in   string
		want Dest
	}{
		{"198.18.0.7", Dest{Prefix: p("198.18.0.7/32")}},
		{"198.18.0.0/24", Dest{Prefix: p("198.18.0.0/24")}},
		{"198.18.0.9/24", Dest{Prefix: p("198.18.0.0/24")}},
		{"198.18.0.7:80", Dest{Prefix: p("198.18.0.7/32"), Port: 80}},
		{"198.18.0.0/15:5432", Dest{Prefix: p("198.18.0.0/15"), Port: 5432}},
		{":53", Dest{Port: 53}},
		{"::1", Dest{Prefix: p("::1/128")}},
		{"[::1]:6379", Dest{Prefix: p("::1/128"), Port: 6379}},
		{"[fd00::/8]:80", Dest{Prefix: p("fd00::/8"), Port: 80}},
		{"fd00::/8", Dest{Prefix: p("fd00::/8")}},
		{" 127.0.0.1:1 ", Dest{Prefix: p("127.0.0.1/32"), Port: 1}},
	} {
		got, err := ParseDest(c.in)
		if err != nil {
			t.Errorf("ParseDest(%q) = %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseDest(%q) = %v, want %v", c.in, got, c.want)
		}
		back, err := ParseDest(got.String())
		if err != nil || back != got {
			t.Errorf("ParseDest(%q.String() = %q) = %v, %v; want %v", c.in, got.String(), back, err, got)
		}
	}
	for _, in := range []string{"", ":", ":0", ":65536", "db.internal:80", "1.2.3.4:", "1.2.3.4:x", "[1.2.3.4]:80",
		"[::1]", "[::1", "::ffff:1.2.3.4", "1.2.3.4/33", "fe80::1%eth0", "[::1]80"} {
		if d, err := ParseDest(in); err == nil {
			t.Errorf("ParseDest(%q) = %v, want an error", in, d)
		} else if !strings.Contains(err.Error(), "destination") {
			t.Errorf("ParseDest(%q) error %q does not say what was wrong", in, err)
		}
	}
}

func FuzzParseDest(f *testing.F) {
	for _, s := range []string{"198.18.0.7", "198.18.0.0/24:80", ":53", "[::1]:6379", "[fd00::/8]:80", "::1", "[", "]:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDest(s)
		if err != nil {
			return
		}
		back, err := ParseDest(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDest(%q) = %v, but ParseDest(%q) = %v, %v", s, d, d.String(), back, err)
		}
		if d.Port == 0 && !d.Prefix.IsValid() {
			t.Fatalf("ParseDest(%q) = a destination of everything", s)
		}
	})
}

func TestOpJSONRoundTrip(t *testing.T) {
	f := func(kind, run, path, link, fault string, dev, ino uint64) bool {
		op := Op{Kind: Kind(kind), Run: run, NS: NS{Path: path, Dev: dev, Ino: ino}, Link: link, Fault: fault}
		b, err := json.Marshal(op)
		if err != nil {
			return false
		}
		var back Op
		return json.Unmarshal(b, &back) == nil && cmp.Equal(op, back)
	}
	if err := quick.Check(f, nil); err != nil {
		t.Error(err)
	}
}

func TestNamesFitInterfaces(t *testing.T) {
	for _, run := range []string{"a", "abc123", "abcdefgh", "ABCDEFGHIJKLMNOP", strings.Repeat("x", 64), "run_with-dashes"} {
		for _, name := range []string{BridgeName(run), VethName(run, maxInstances-1)} {
			if len(name) > 15 {
				t.Errorf("run %q: interface name %q is %d characters, want at most 15", run, name, len(name))
			}
		}
		if !strings.HasPrefix(TableName(run), "faultline") {
			t.Errorf("TableName(%q) = %q, want a faultline prefix", run, TableName(run))
		}
	}
	if BridgeName("abc") == BridgeName("abd") || BridgeName(strings.Repeat("x", 9)) == BridgeName(strings.Repeat("y", 9)) {
		t.Error("different runs share a bridge name")
	}
}

func TestLacksNothingHere(t *testing.T) {
	needKernel(t) // fails under CI=true when this root machine lacks anything
}
