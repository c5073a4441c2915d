package experiment

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/internal/decode"
)

// ActionDecoder reads the value of a fault's action key, for an action a
// fault family outside this package does: problems go through n (each at
// its place); what it returns is the fault's Action.
type ActionDecoder func(n Node) Action

// Node is the YAML value of a fault's action as an ActionDecoder reads it:
// a mapping whose values it gets by key, each read the way the file's own
// fields are, with every problem reported at its line, column and field.
type Node struct {
	d     *decode.Decoder
	n     *yaml.Node
	field string
	f     decode.Fields
}

func newNode(d *decode.Decoder, n *yaml.Node, field string) Node {
	return Node{d: d, n: n, field: field, f: d.Mapping(n, field)}
}

// Field is the node's name in messages ("faults[2].feature_flag").
func (n Node) Field() string { return n.field }

// Keys checks that the mapping has no key but these (an unknown one is
// reported with the closest known one).
func (n Node) Keys(allowed ...string) { n.d.Mapping(n.n, n.field, allowed...) }

// Has reports whether key is given.
func (n Node) Has(key string) bool { return n.f.Get(key) != nil }

// String returns key's value as a string, "" when it is not given.
func (n Node) String(key string) string {
	if v := n.f.Get(key); v != nil {
		return n.d.Str(v, n.field+"."+key)
	}
	return ""
}

// Strings returns key's value as a list of strings (one string is a list
// of one).
func (n Node) Strings(key string) []string {
	if v := n.f.Get(key); v != nil {
		return n.d.StrList(v, n.field+"."+key, true)
	}
	return nil
}

// Duration returns key's value as a Go duration ("1.5s"), 0 when not
// given.
func (n Node) Duration(key string) time.Duration {
	if v := n.f.Get(key); v != nil {
		return n.d.Duration(v, n.field+"."+key)
	}
	return 0
}

// Int returns key's value as a whole number, 0 when not given.
func (n Node) Int(key string) int {
	if v := n.f.Get(key); v != nil {
		return n.d.Integer(v, n.field+"."+key)
	}
	return 0
}

// Number returns key's value as a number, 0 when not given.
func (n Node) Number(key string) float64 {
	if v := n.f.Get(key); v != nil {
		return n.d.Number(v, n.field+"."+key)
	}
	return 0
}

// Bool returns key's value as true or false, false when not given.
func (n Node) Bool(key string) bool {
	if v := n.f.Get(key); v != nil {
		return n.d.Boolean(v, n.field+"."+key)
	}
	return false
}

// Errorf reports a problem of key's value (of the whole node when key is
// "" or not given).
func (n Node) Errorf(key, format string, args ...any) {
	at, field := n.n, n.field
	if v := n.f.Get(key); v != nil {
		at, field = v, n.field+"."+key
	} else if key != "" {
		field = n.field + "." + key
	}
	n.d.Errorf(at, field, format, args...)
}
