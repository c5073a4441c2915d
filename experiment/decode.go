package experiment

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Pos is a place in an experiment file.
type Pos struct {
	Line, Col int
}

// Error is one problem in an experiment file, with its place and field:
// "slow.yaml:12:7: faults[2].latency.delay: must be > 0, got -5ms".
type Error struct {
	File  string
	Pos   Pos
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Pos.Line, e.Pos.Col, e.Field, e.Msg)
}

// decoder walks a YAML node tree, collecting every problem with its place
// instead of stopping at the first.
type decoder struct {
	file string
	errs []error
	// undefined are the nodes that hold an undefined ${VAR}: that error
	// says it all, so no other is reported on them.
	undefined map[*yaml.Node]bool
}

func pos(n *yaml.Node) Pos { return Pos{n.Line, n.Column} }

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	if d.undefined[n] {
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Pos: pos(n), Field: field, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

// fields is a mapping's keys and values, in file order.
type fields struct {
	keys []*yaml.Node
	vals map[string]*yaml.Node
}

func (f fields) get(key string) *yaml.Node { return f.vals[key] }

// key returns the key node of key, nil if it is not there.
func (f fields) key(key string) *yaml.Node {
	for _, k := range f.keys {
		if k.Value == key {
			return k
		}
	}
	return nil
}

// mapping checks that n is a mapping whose keys are all in allowed (an
// unknown key is reported with the closest known one) and returns it.
func (d *decoder) mapping(n *yaml.Node, field string, allowed ...string) fields {
	f := fields{vals: map[string]*yaml.Node{}}
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return f // "stop: {}" and "stop:" mean the same
		}
		d.errorf(n, field, "want a mapping, got %s", kindName(n))
		return f
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := join(field, k.Value)
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			d.errorf(k, name, "unknown field%s", suggest(k.Value, allowed))
			continue
		}
		if _, dup := f.vals[k.Value]; dup {
			d.errorf(k, name, "given twice")
			continue
		}
		f.keys = append(f.keys, k)
		f.vals[k.Value] = v
	}
	return f
}

func join(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func (d *decoder) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, field, "want a string, got %s", kindName(n))
		return ""
	}
	return n.Value
}

func (d *decoder) integer(n *yaml.Node, field string) int {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.Atoi(n.Value); err == nil {
			return v
		}
	}
	d.errorf(n, field, "want a whole number, got %s", kindName(n))
	return 0
}

func (d *decoder) number(n *yaml.Node, field string) float64 {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return v
		}
	}
	d.errorf(n, field, "want a number, got %s", kindName(n))
	return 0
}

func (d *decoder) boolean(n *yaml.Node, field string) bool {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true":
			return true
		case "false":
			return false
		}
	}
	d.errorf(n, field, "want true or false, got %s", kindName(n))
	return false
}

// duration reads a Go duration ("1.5s", "300ms"); 0 alone is allowed.
func (d *decoder) duration(n *yaml.Node, field string) time.Duration {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "0" {
			return 0
		}
		if v, err := time.ParseDuration(n.Value); err == nil {
			if v < 0 {
				d.errorf(n, field, "must be >= 0, got %s", n.Value)
				return 0
			}
			return v
		}
	}
	d.errorf(n, field, "want a duration such as 500ms, 2s or 1m30s, got %s", kindName(n))
	return 0
}

// positive reads a duration that must be > 0.
func (d *decoder) positive(n *yaml.Node, field string) time.Duration {
	v := d.duration(n, field)
	if n.Kind == yaml.ScalarNode {
		if p, err := time.ParseDuration(n.Value); n.Value == "0" || err == nil && p == 0 {
			d.errorf(n, field, "must be > 0, got %s", n.Value)
		}
	}
	return v
}

// strList reads a list of strings; a single string is a list of one when
// single is true.
func (d *decoder) strList(n *yaml.Node, field string, single bool) []string {
	if single && n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "want a list of strings, got %s", kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, d.str(c, fmt.Sprintf("%s[%d]", field, i)))
	}
	return out
}

// unknownKeys lists the keys of mapping n that are not in allowed.
func unknownKeys(n *yaml.Node, allowed []string) []string {
	var out []string
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(allowed, k) {
			out = append(out, k)
		}
	}
	return out
}

// closeTo reports whether word is a likely misspelling of one of known,
// as suggest judges it.
func closeTo(word string, known []string) bool {
	for _, k := range known {
		if distance(word, k) <= max(1, len(word)/3) {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for the known word closest to
// word, when one is close enough.
func suggest(word string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if dd := distance(word, k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best != "" && bestD <= max(1, len(word)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(known) > 0 {
		return "; known: " + strings.Join(known, ", ")
	}
	return ""
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
