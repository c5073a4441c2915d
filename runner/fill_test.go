package runner

import (
	"reflect"
	"strings"
	"testing"

	"github.com/faultline/faultline/experiment"
)

// walkStrings calls f with every string reachable from v.
func walkStrings(v reflect.Value, path string, f func(path, s string)) {
	switch v.Kind() {
	case reflect.String:
		f(path, v.String())
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, f)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walkStrings(v.Field(i), path+"."+v.Type().Field(i).Name, f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkStrings(v.Index(i), path+"[]", f)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			walkStrings(it.Key(), path+"{key}", f)
			walkStrings(it.Value(), path+"{}", f)
		}
	}
}

// TestFilledCopyReachesEveryField: a reference is filled in wherever the
// file may hold one (probe commands, headers, bodies, exec and restart
// commands, stress flags, toxic attributes), and the original keeps its
// text.
func TestFilledCopyReachesEveryField(t *testing.T) {
	src := `
name: refs
targets:
  a: {process: {command: [a, "{port}"]}}
  b: {process: {match: "x {a.port}", restart: [restart, "{a.addr}"]}}
  link: {proxy: {listen: "127.0.0.1:0", upstream: "{a.addr}"}}
traffic:
  rate: 1/s
  requests:
    - {name: q, method: POST, url: "http://{a.addr}/", headers: {X-A: "{a.addr}"}, body: "{a.addrs}"}
steady_state:
  - probe: {command: [test, "{a.port}", -gt, "0"]}
  - probe: "GET http://{a.addr}/health"
  - probe: "tcp {a[0].addr}"
faults:
  - {name: e, exec: {inject: [touch, "{a.port}"], revert: [rm, "{a.port}"]}, duration: 1s}
  - {name: s, connections: {address: "{a.addr}", count: 1}, duration: 1s}
  - {name: h, target: link, http_status: {status: 500, body: "from {a.addr}"}, duration: 1s}
stop_when: [error_rate > 90%]
`
	x, err := experiment.Parse("refs.yaml", []byte(src), experiment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	filled := filledCopy(x, func(s string) string { return strings.ReplaceAll(s, "{a", "<a") })
	var left, changed []string
	walkStrings(reflect.ValueOf(filled), "x", func(path, s string) {
		if strings.Contains(s, "{a") {
			left = append(left, path+" = "+s)
		}
		if strings.Contains(s, "<a") {
			changed = append(changed, path)
		}
	})
	if len(left) > 0 {
		t.Errorf("references left unfilled:\n%s", strings.Join(left, "\n"))
	}
	if len(changed) < 13 {
		t.Errorf("filled %d fields, want every one of the 13 that hold a reference: %v", len(changed), changed)
	}
	walkStrings(reflect.ValueOf(x), "x", func(path, s string) {
		if strings.Contains(s, "<a") {
			t.Errorf("the original changed too: %s = %s", path, s)
		}
	})
}
