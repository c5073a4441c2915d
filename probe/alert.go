package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Alert is an alert firing in a Prometheus: its name, and since when its
// condition has held (it fires once that has lasted the rule's for).
type Alert struct {
	Name     string
	ActiveAt time.Time
}

// Alerts returns the alerts firing now in the Prometheus at url (its
// /api/v1/alerts): only those in state "firing" count, pending ones not,
// whatever their labels. token, if not empty, is sent as a bearer token.
func (p *Prober) Alerts(ctx context.Context, url, token string) ([]Alert, error) {
	raw, status, err := p.promGet(ctx, strings.TrimRight(url, "/")+"/api/v1/alerts", token)
	if err != nil {
		return nil, err
	}
	return ParseAlerts(raw, status)
}

// ParseAlerts reads the firing alerts from a Prometheus /api/v1/alerts
// answer (status is the HTTP status line, for messages).
func ParseAlerts(raw []byte, status string) ([]Alert, error) {
	var body struct {
		Data struct {
			Alerts []struct {
				Labels   map[string]string `json:"labels"`
				State    string            `json:"state"`
				ActiveAt string            `json:"activeAt"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := decodeAnswer(raw, status, &body); err != nil {
		return nil, err
	}
	var firing []Alert
	for _, a := range body.Data.Alerts {
		if a.State == "firing" {
			at, _ := time.Parse(time.RFC3339Nano, a.ActiveAt) // zero when Prometheus did not say
			firing = append(firing, Alert{Name: a.Labels["alertname"], ActiveAt: at})
		}
	}
	return firing, nil
}

// Firing returns the alert named name among alerts, and whether it is.
func Firing(alerts []Alert, name string) (Alert, bool) {
	for _, a := range alerts {
		if a.Name == name {
			return a, true
		}
	}
	return Alert{}, false
}

// Sample is one series' value of a query's answer.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant query in the Prometheus at url and returns every
// series' value (one for a scalar answer).
func (p *Prober) Query(ctx context.Context, url, token, query string) ([]Sample, error) {
	u := strings.TrimRight(url, "/") + "/api/v1/query?query=" + urlQueryEscape(query)
	raw, status, err := p.promGet(ctx, u, token)
	if err != nil {
		return nil, err
	}
	return ParseQuery(raw, status)
}

// ParseQuery reads every series' value from a Prometheus /api/v1/query
// answer (status is the HTTP status line, for messages).
func ParseQuery(raw []byte, status string) ([]Sample, error) {
	var body struct {
		Data struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := decodeAnswer(raw, status, &body); err != nil {
		return nil, err
	}
	var out []Sample
	switch body.Data.ResultType {
	case "vector":
		for _, raw := range body.Data.Result {
			var s struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			}
			if err := json.Unmarshal(raw, &s); err != nil || len(s.Value) != 2 {
				return nil, fmt.Errorf("prometheus: a series without a value")
			}
			v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
			if err != nil {
				return nil, fmt.Errorf("prometheus: value %v is not a number", s.Value[1])
			}
			out = append(out, Sample{Labels: s.Metric, Value: v})
		}
	case "scalar": // the result is the pair itself: [time, "value"]
		if len(body.Data.Result) != 2 {
			return nil, fmt.Errorf("prometheus: a scalar without a value")
		}
		var raw any
		_ = json.Unmarshal(body.Data.Result[1], &raw)
		v, err := strconv.ParseFloat(fmt.Sprint(raw), 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus: value %v is not a number", raw)
		}
		out = append(out, Sample{Value: v})
	default:
		return nil, fmt.Errorf("prometheus: a %s answer, want a vector or a scalar", body.Data.ResultType)
	}
	return out, nil
}

// promGet reads a Prometheus API answer and its HTTP status; token, if
// not empty, is sent as a bearer token.
func (p *Prober) promGet(ctx context.Context, url, token string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.cfg.HTTP.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return raw, resp.Status, err
}

// decodeAnswer reads a Prometheus API answer into body, an error when it
// is not JSON or not "success".
func decodeAnswer(raw []byte, status string, body any) error {
	if err := json.Unmarshal(raw, body); err != nil {
		return fmt.Errorf("prometheus answered %s: %s", status, firstLine(raw))
	}
	var st struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	_ = json.Unmarshal(raw, &st)
	if st.Status != "success" {
		return fmt.Errorf("prometheus: %s", st.Error)
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// alertProbe passes while the alert is not firing.
func alertProbe(ctx context.Context, p *Prober, s *Spec) (Result, error) {
	firing, err := p.Alerts(ctx, s.URL, s.Token)
	if err != nil {
		return Result{}, err
	}
	if _, ok := Firing(firing, s.Alert); ok {
		return Result{Detail: s.Alert + " firing"}, nil
	}
	return Result{Passed: true, Detail: s.Alert + " not firing"}, nil
}
