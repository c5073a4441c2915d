package experiment

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/faultline/faultline/probe"
	"gopkg.in/yaml.v3"
)

func compiled(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("experiment.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("experiment.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// asJSON reads YAML into the values a JSON validator takes.
func asJSON(t *testing.T, yamlText []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(yamlText, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The schema accepts every valid file the repository has, the shipped
// examples included (${VAR} numbers, an http_body null key).
func TestSchemaAcceptsValidFiles(t *testing.T) {
	s := compiled(t)
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	examples, _ := filepath.Glob("../examples/experiments/*.yaml")
	files = append(files, examples...)
	if len(examples) < 10 {
		t.Fatalf("found %d example experiments: is the repository there?", len(examples))
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(asJSON(t, data)); err != nil {
			t.Errorf("the schema refuses %s: %v", file, err)
		}
	}
}

func TestSchemaRefusesUnknownKeys(t *testing.T) {
	s := compiled(t)
	data, _ := os.ReadFile("testdata/invalid/typos.yaml")
	if err := s.Validate(asJSON(t, data)); err == nil || !strings.Contains(err.Error(), "basline") {
		t.Fatalf("the schema accepted unknown keys: %v", err)
	}
}

// TestSchemaMatchesParser checks that the schema names exactly the keys
// the parser takes, mapping by mapping.
func TestSchemaMatchesParser(t *testing.T) {
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Defs map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	keys := func(def string) []string {
		var out []string
		for k := range s.Defs[def].Properties {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(in []string) []string {
		out := slices.Clone(in)
		slices.Sort(out)
		return out
	}
	for def, parser := range map[string][]string{
		"fileDoc":         topKeys,
		"targetDoc":       targetKeys,
		"processDoc":      processKeys,
		"proxyDoc":        proxyKeys,
		"dnsDoc":          dnsKeys,
		"podsDoc":         podsKeys,
		"trafficDoc":      trafficKeys,
		"requestObj":      requestKeys,
		"checkObj":        checkKeys,
		"stopObj":         stopKeys,
		"tcpRequestDoc":   tcpKeys,
		"redisRequestDoc": redisKeys,
		"sqlRequestDoc":   sqlKeys,
		"dnsRequestDoc":   dnsRequestKeys,
		"grpcRequestDoc":  grpcKeys,
		"probeObj":        probe.Keys,
		"selectObj":       selectKeys,
		"faultDoc":        append(slices.Clone(faultFields), actionKeys...),
	} {
		if diff := cmp.Diff(sorted(parser), keys(def)); diff != "" {
			t.Errorf("%s: schema and parser differ (-parser +schema):\n%s", def, diff)
		}
	}
}

// ready_pods is a steady-state condition, not a stop condition: the
// schema says so as the parser does.
func TestSchemaStopWhenIsTrafficOnly(t *testing.T) {
	s := compiled(t)
	base := "name: x\ntargets: {t: {proxy: {listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}}}\nfaults: [{name: f, target: t, down: {}}]\n"
	if err := s.Validate(asJSON(t, []byte(base+"stop_when: [error_rate > 90% for 5s]\n"))); err != nil {
		t.Fatalf("the schema refuses a traffic stop condition: %v", err)
	}
	if err := s.Validate(asJSON(t, []byte(base+"stop_when: [ready_pods(app=x) < 50%]\n"))); err == nil {
		t.Fatal("the schema accepts ready_pods in stop_when")
	}
	if err := s.Validate(asJSON(t, []byte(base+"steady_state: [ready_pods(app=x) >= 80%]\n"))); err != nil {
		t.Fatalf("the schema refuses ready_pods in steady_state: %v", err)
	}
}

// The schema takes what the parser takes: a signal without SIG, a
// set-based selector in ready_pods.
func TestSchemaSignalsAndSelectors(t *testing.T) {
	s := compiled(t)
	src := `name: x
targets: {w: {process: {match: worker}}}
steady_state: ["ready_pods(app in (web,api)) >= 80%"]
faults: [{name: f, target: w, kill: {signal: TERM}, irreversible: true}]
inject: 5s
`
	if err := s.Validate(asJSON(t, []byte(src))); err != nil {
		t.Fatalf("the schema refuses: %v", err)
	}
	if _, err := Parse("x.yaml", []byte(src), Options{AllowNoStop: true}); err != nil {
		t.Fatalf("the parser refuses: %v", err)
	}
}

// A family's own action key is in the schema, with its shape, and a file
// that uses it validates.
func TestSchemaWithAFamilysAction(t *testing.T) {
	raw, err := SchemaWith(map[string]any{"feature_flag": struct {
		Flag  string `json:"flag"`
		Value bool   `json:"value"`
	}{}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"feature_flag"`)) {
		t.Fatalf("schema lacks feature_flag:\n%s", raw)
	}
	c := jsonschema.NewCompiler()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("experiment.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("experiment.json")
	if err != nil {
		t.Fatal(err)
	}
	file := map[string]any{"name": "x", "faults": []any{map[string]any{"name": "f", "feature_flag": map[string]any{"flag": "a", "value": true}}}}
	if err := sch.Validate(file); err != nil {
		t.Errorf("a file with feature_flag: %v", err)
	}
	file["faults"] = []any{map[string]any{"name": "f", "feature_flag": map[string]any{"flag": 3}}}
	if err := sch.Validate(file); err == nil {
		t.Error("a feature_flag of the wrong shape validated")
	}
}

// The order the messages list actions in has every built-in action, and
// only those.
func TestActionKeysAreTheTable(t *testing.T) {
	if diff := cmp.Diff(slices.Sorted(slices.Values(actionKeys)), slices.Sorted(maps.Keys(actionDecoders))); diff != "" {
		t.Errorf("actionKeys and actionDecoders differ (-keys +table):\n%s", diff)
	}
}
