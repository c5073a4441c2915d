// Package decode reads YAML configuration files (experiment files, monkey
// files) the way faultline reports their problems: every problem at once,
// each with its file, line, column and field, unknown keys with the
// closest known one, ${VAR} filled from given values or the environment.
// It is the dispenser every file format of faultline decodes through.
package decode

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Pos is a place in a file.
type Pos struct {
	Line, Col int
}

// Error is one problem in a file, with its place and field:
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

// Decoder walks a YAML node tree, collecting every problem with its place
// instead of stopping at the first.
type Decoder struct {
	file string
	errs []error
	// undefined are the nodes that hold an undefined ${VAR}: that error
	// says it all, so no other is reported on them.
	undefined map[*yaml.Node]bool
}

// New returns a decoder for file (named in every error).
func New(file string) *Decoder { return &Decoder{file: file} }

// Errs returns the problems found so far, in the order found.
func (d *Decoder) Errs() []error { return d.errs }

// Err returns every problem found, sorted by place, as one error
// (errors.Join of *Error), or nil.
func (d *Decoder) Err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b error) int {
		pa, pb := a.(*Error).Pos, b.(*Error).Pos
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		return pa.Col - pb.Col
	})
	return errors.Join(d.errs...)
}

// PosOf is where a node is.
func PosOf(n *yaml.Node) Pos { return Pos{n.Line, n.Column} }

func (d *Decoder) Errorf(n *yaml.Node, field, format string, args ...any) {
	if d.undefined[n] {
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Pos: PosOf(n), Field: field, Msg: fmt.Sprintf(format, args...)})
}

func KindName(n *yaml.Node) string {
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

// Fields is a mapping's keys and values, in file order.
type Fields struct {
	Keys []*yaml.Node
	vals map[string]*yaml.Node
}

// Get returns the value of key, nil if it is not there.
func (f Fields) Get(key string) *yaml.Node { return f.vals[key] }

// Key returns the key node of key, nil if it is not there.
func (f Fields) Key(key string) *yaml.Node {
	for _, k := range f.Keys {
		if k.Value == key {
			return k
		}
	}
	return nil
}

// mapping checks that n is a mapping whose keys are all in allowed (an
// unknown key is reported with the closest known one) and returns it.
func (d *Decoder) Mapping(n *yaml.Node, field string, allowed ...string) Fields {
	f := Fields{vals: map[string]*yaml.Node{}}
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return f // "stop: {}" and "stop:" mean the same
		}
		d.Errorf(n, field, "want a mapping, got %s", KindName(n))
		return f
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := Join(field, k.Value)
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			d.Errorf(k, name, "unknown field%s", Suggest(k.Value, allowed))
			continue
		}
		if _, dup := f.vals[k.Value]; dup {
			d.Errorf(k, name, "given twice")
			continue
		}
		f.Keys = append(f.Keys, k)
		f.vals[k.Value] = v
	}
	return f
}

func Join(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func (d *Decoder) Str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.Errorf(n, field, "want a string, got %s", KindName(n))
		return ""
	}
	return n.Value
}

func (d *Decoder) Integer(n *yaml.Node, field string) int {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.Atoi(n.Value); err == nil {
			return v
		}
	}
	d.Errorf(n, field, "want a whole number, got %s", KindName(n))
	return 0
}

func (d *Decoder) Number(n *yaml.Node, field string) float64 {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return v
		}
	}
	d.Errorf(n, field, "want a number, got %s", KindName(n))
	return 0
}

func (d *Decoder) Boolean(n *yaml.Node, field string) bool {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true":
			return true
		case "false":
			return false
		}
	}
	d.Errorf(n, field, "want true or false, got %s", KindName(n))
	return false
}

// duration reads a Go duration ("1.5s", "300ms"); 0 alone is allowed.
func (d *Decoder) Duration(n *yaml.Node, field string) time.Duration {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "0" {
			return 0
		}
		if v, err := time.ParseDuration(n.Value); err == nil {
			if v < 0 {
				d.Errorf(n, field, "must be >= 0, got %s", n.Value)
				return 0
			}
			return v
		}
	}
	d.Errorf(n, field, "want a duration such as 500ms, 2s or 1m30s, got %s", KindName(n))
	return 0
}

// positive reads a duration that must be > 0.
func (d *Decoder) Positive(n *yaml.Node, field string) time.Duration {
	v := d.Duration(n, field)
	if n.Kind == yaml.ScalarNode {
		if p, err := time.ParseDuration(n.Value); n.Value == "0" || err == nil && p == 0 {
			d.Errorf(n, field, "must be > 0, got %s", n.Value)
		}
	}
	return v
}

// strList reads a list of strings; a single string is a list of one when
// single is true.
func (d *Decoder) StrList(n *yaml.Node, field string, single bool) []string {
	if single && n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, field, "want a list of strings, got %s", KindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, d.Str(c, fmt.Sprintf("%s[%d]", field, i)))
	}
	return out
}

// unknownKeys lists the keys of mapping n that are not in allowed.
func UnknownKeys(n *yaml.Node, allowed []string) []string {
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
func CloseTo(word string, known []string) bool {
	for _, k := range known {
		if distance(word, k) <= max(1, len(word)/3) {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for the known word closest to
// word, when one is close enough.
func Suggest(word string, known []string) string {
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

// Document reads a YAML file's top node, or the error naming its line; an
// empty file's error says what the file needs (need).
func Document(file string, data []byte, need string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg, line := yamlProblem(err)
		// yaml.v3 gives the line of the enclosing block for many errors, and
		// counts some from 0: the first line after which the file fails the
		// same way is where the problem is.
		if at := firstFailingLine(data, msg, line-1); at > 0 {
			line = at
		}
		switch {
		case strings.Contains(msg, "expected ',' or"):
			msg += " (a [ or { not closed, or a value holding { } or , inside [ ] or { } without quotes)"
		case strings.Contains(msg, "expected key"), strings.Contains(msg, "expected '-' indicator"):
			msg += " (check the indentation of this line against the lines above)"
		}
		return nil, errors.Join(&Error{File: file, Pos: Pos{line, 1}, Msg: "not valid YAML: " + msg})
	}
	if len(doc.Content) == 0 {
		return nil, errors.Join(&Error{File: file, Pos: Pos{1, 1}, Msg: "empty file: " + need})
	}
	return doc.Content[0], nil
}

// yamlProblem splits a yaml.v3 error into its message and the line it
// gives (1 if none).
func yamlProblem(err error) (string, int) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 1
	if m := regexp.MustCompile(`^line (\d+): `).FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(msg, m[0])
	}
	return msg, line
}

// firstFailingLine returns the first line n, from line from on, such that
// the file's first n lines fail to parse with msg; 0 if the whole file
// does not fail that way. A YAML syntax error stays once a prefix has it,
// so the line is searched in halves: a few parses, whatever the size.
// (The line yaml.v3 gives is never more than one past the problem's.)
func firstFailingLine(data []byte, msg string, from int) int {
	var ends []int // ends[n-1]: the length of the first n lines
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	fails := func(n int) bool {
		var doc yaml.Node
		err := yaml.Unmarshal(data[:ends[n-1]], &doc)
		if err == nil {
			return false
		}
		m, _ := yamlProblem(err)
		return m == msg
	}
	lo, hi := max(from, 1), len(ends)
	if lo > hi || !fails(hi) {
		return 0
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-(?:[^{}]|\{[^{}]*\})*)?\}`)

// ExpandVars replaces ${NAME} in every scalar, from vars or the
// environment; an undefined one is an error at its place and field.
func (d *Decoder) ExpandVars(n *yaml.Node, vars map[string]string, field string) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = varRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			g := varRE.FindStringSubmatch(m)
			name := g[1]
			if v, ok := vars[name]; ok {
				return v
			}
			if v, ok := os.LookupEnv(name); ok {
				return v
			}
			if def, ok := strings.CutPrefix(g[2], ":-"); ok {
				return def
			}
			d.Errorf(n, field, "${%s} is not defined: give --var %s=VALUE or set it in the environment", name, name)
			if d.undefined == nil {
				d.undefined = map[*yaml.Node]bool{}
			}
			d.undefined[n] = true
			return m
		})
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.ExpandVars(n.Content[i+1], vars, Join(field, n.Content[i].Value))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.ExpandVars(c, vars, fmt.Sprintf("%s[%d]", field, i))
		}
	}
}
