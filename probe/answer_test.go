package probe_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/probe"
)

// Prometheus's answers come from outside: whatever they hold, reading
// them returns values or an error, never a panic.
func FuzzPrometheusAnswer(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"s":"a"},"value":[1700000000.1,"1"]},{"metric":{},"value":[1,"NaN"]}]}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"7"]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]}}`,
		`{"status":"error","errorType":"bad_data","error":"parse error"}`,
		`{"status":"success","data":{"alerts":[{"labels":{"alertname":"A"},"state":"firing"},{"labels":{"alertname":"B"},"state":"pending"}]}}`,
		`<html>502 Bad Gateway</html>`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if samples, err := probe.ParseQuery(raw, "200 OK"); err != nil && samples != nil {
			t.Fatalf("samples %v with the error %v", samples, err)
		}
		if firing, err := probe.ParseAlerts(raw, "200 OK"); err != nil && firing != nil {
			t.Fatalf("alerts %v with the error %v", firing, err)
		}
	})
}

func TestParsePrometheusAnswers(t *testing.T) {
	samples, err := probe.ParseQuery([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"s":"a"},"value":[1,"1"]},{"metric":{"s":"b"},"value":[1,"+Inf"]}]}}`), "200 OK")
	if err != nil || len(samples) != 2 || samples[0].Labels["s"] != "a" || samples[0].Value != 1 || !math.IsInf(samples[1].Value, 1) {
		t.Errorf("vector: %+v, %v", samples, err)
	}
	if _, err := probe.ParseQuery([]byte(`{"status":"error","error":"parse error at char 3"}`), "400 Bad Request"); err == nil || !strings.Contains(err.Error(), "parse error at char 3") {
		t.Errorf("error answer: %v, want Prometheus's error", err)
	}
	if _, err := probe.ParseQuery([]byte(`<html>502</html>`), "502 Bad Gateway"); err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Errorf("not JSON: %v, want the HTTP status", err)
	}
	firing, err := probe.ParseAlerts([]byte(`{"status":"success","data":{"alerts":[{"labels":{"alertname":"A"},"state":"firing","activeAt":"2026-12-04T05:00:01.5Z"},{"labels":{"alertname":"B"},"state":"pending"}]}}`), "200 OK")
	if a, ok := probe.Firing(firing, "A"); err != nil || len(firing) != 1 || !ok || !a.ActiveAt.Equal(time.Date(2026, 12, 4, 5, 0, 1, 5e8, time.UTC)) {
		t.Errorf("alerts: %v, %v; want only the firing one", firing, err)
	}
}
