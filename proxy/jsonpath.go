package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// jsonSeg is one step of a JSON path: a field name, an index, or every
// element ([*]).
type jsonSeg struct {
	field string
	index int // with field == "": an index, or -1 for [*]
}

// parseJSONPath reads paths such as "$.payment.status", "$.items[*].price"
// or "$.items[0]". It needs at least one step after "$".
func parseJSONPath(p string) ([]jsonSeg, error) {
	rest, ok := strings.CutPrefix(p, "$")
	if !ok {
		return nil, fmt.Errorf("JSON path %q: must start with $, e.g. $.payment.status", p)
	}
	var segs []jsonSeg
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			if end == 0 {
				return nil, fmt.Errorf("JSON path %q: empty field name", p)
			}
			segs = append(segs, jsonSeg{field: rest[:end]})
			rest = rest[end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("JSON path %q: [ without ]", p)
			}
			in := rest[1:end]
			rest = rest[end+1:]
			if in == "*" {
				segs = append(segs, jsonSeg{index: -1})
				continue
			}
			n, err := strconv.Atoi(in)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("JSON path %q: [%s]: want an index or *", p, in)
			}
			segs = append(segs, jsonSeg{index: n})
		default:
			return nil, fmt.Errorf("JSON path %q: unexpected %q: want .field, [N] or [*]", p, rest[0])
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("JSON path %q: names nothing: want e.g. $.status", p)
	}
	return segs, nil
}

// jsonEdit calls edit on every parent that holds the last step of segs,
// with that step; it returns the number of places edited.
func jsonEdit(v any, segs []jsonSeg, edit func(parent any, last jsonSeg) bool) int {
	if len(segs) == 1 {
		switch parent := v.(type) {
		case map[string]any:
			if segs[0].field == "" {
				return 0
			}
			if _, ok := parent[segs[0].field]; !ok {
				return 0
			}
		case []any:
			if segs[0].field != "" {
				return 0
			}
			if segs[0].index == -1 {
				n := 0
				for i := range parent {
					if edit(parent, jsonSeg{index: i}) {
						n++
					}
				}
				return n
			}
			if segs[0].index >= len(parent) {
				return 0
			}
		default:
			return 0
		}
		if edit(v, segs[0]) {
			return 1
		}
		return 0
	}
	n := 0
	switch c := v.(type) {
	case map[string]any:
		if child, ok := c[segs[0].field]; ok && segs[0].field != "" {
			n += jsonEdit(child, segs[1:], edit)
		}
	case []any:
		if segs[0].field != "" {
			return 0
		}
		if segs[0].index == -1 {
			for _, child := range c {
				n += jsonEdit(child, segs[1:], edit)
			}
		} else if segs[0].index < len(c) {
			n += jsonEdit(c[segs[0].index], segs[1:], edit)
		}
	}
	return n
}

func jsonGet(parent any, s jsonSeg) any {
	if m, ok := parent.(map[string]any); ok {
		return m[s.field]
	}
	return parent.([]any)[s.index]
}

func jsonSet(parent any, s jsonSeg, v any) {
	if m, ok := parent.(map[string]any); ok {
		m[s.field] = v
		return
	}
	parent.([]any)[s.index] = v
}

// rewriteJSON applies an HTTPBody's JSON edits to a document; ok is false
// when the body is not JSON (it is then left alone) or nothing matched.
func (e HTTPBody) rewriteJSON(body []byte) ([]byte, bool) {
	if len(e.Null)+len(e.Drop)+len(e.Retype)+len(e.Rename) == 0 {
		return body, false
	}
	var doc any
	if err := jsonUnmarshalNumber(body, &doc); err != nil {
		return body, false
	}
	edits := 0
	for _, p := range e.Null {
		segs, _ := parseJSONPath(p)
		edits += jsonEdit(doc, segs, func(parent any, s jsonSeg) bool { jsonSet(parent, s, nil); return true })
	}
	for _, p := range e.Retype {
		segs, _ := parseJSONPath(p)
		edits += jsonEdit(doc, segs, func(parent any, s jsonSeg) bool {
			switch v := jsonGet(parent, s).(type) {
			case string:
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					jsonSet(parent, s, f)
				} else {
					jsonSet(parent, s, 0) // a number, whatever the text
				}
			case jsonNumber:
				jsonSet(parent, s, string(v))
			default:
				return false
			}
			return true
		})
	}
	for _, p := range slices.Sorted(maps.Keys(e.Rename)) { // in one order: replays match
		name := e.Rename[p]
		segs, _ := parseJSONPath(p)
		edits += jsonEdit(doc, segs, func(parent any, s jsonSeg) bool {
			m, ok := parent.(map[string]any)
			if !ok {
				return false
			}
			m[name] = m[s.field]
			delete(m, s.field)
			return true
		})
	}
	for _, p := range e.Drop {
		segs, _ := parseJSONPath(p)
		edits += jsonEdit(doc, segs, func(parent any, s jsonSeg) bool {
			m, ok := parent.(map[string]any)
			if ok {
				delete(m, s.field)
			}
			return ok
		})
	}
	if edits == 0 {
		return body, false
	}
	out, err := jsonMarshal(doc)
	if err != nil {
		return body, false
	}
	return out, true
}
