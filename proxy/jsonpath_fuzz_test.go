package proxy

import (
	"encoding/json"
	"testing"
)

// FuzzJSONPath: any path either parses or is refused, and rewriting any
// body with a parsed path gives valid JSON or the body unchanged.
func FuzzJSONPath(f *testing.F) {
	for _, s := range []string{"$.status", "$.items[*].price", "$.a[0].b", "$", "status", "$..x", "$.a[", "$.a[-1]", "$[*]"} {
		f.Add(s, `{"status":"ok","items":[{"price":"1.5"},{"price":2}],"a":[{"b":1}]}`)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		if _, err := parseJSONPath(path); err != nil {
			if (HTTPBody{Null: []string{path}}).validate() == nil {
				t.Fatalf("validate accepted %q that parseJSONPath refuses", path)
			}
			return
		}
		for _, e := range []HTTPBody{{Null: []string{path}}, {Drop: []string{path}}, {Retype: []string{path}}, {Rename: map[string]string{path: "x"}}} {
			out, changed := e.rewriteJSON([]byte(body))
			if !changed {
				if string(out) != body {
					t.Fatalf("unchanged body differs: %q -> %q", body, out)
				}
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("rewrite of %q at %q gave invalid JSON %q", body, path, out)
			}
		}
	})
}
