package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// prometheusProbe runs an instant query and compares its first value with
// Expect ("< 5").
func prometheusProbe(ctx context.Context, p *Prober, s *Spec) (Result, error) {
	u := strings.TrimRight(s.URL, "/") + "/api/v1/query?query=" + url.QueryEscape(s.Query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{}, err
	}
	resp, err := p.cfg.HTTP.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return Result{}, fmt.Errorf("prometheus answer: %w", err)
	}
	if body.Status != "success" {
		return Result{}, fmt.Errorf("prometheus: %s", body.Error)
	}
	var value []any
	switch body.Data.ResultType {
	case "vector":
		if len(body.Data.Result) == 0 {
			return Result{Detail: "the query returned no series"}, nil
		}
		var sample struct {
			Value []any `json:"value"`
		}
		_ = json.Unmarshal(body.Data.Result[0], &sample)
		value = sample.Value
	case "scalar": // the result is the pair itself: [time, "value"]
		for _, raw := range body.Data.Result {
			var v any
			_ = json.Unmarshal(raw, &v)
			value = append(value, v)
		}
	}
	if len(value) != 2 {
		return Result{Detail: "no value in the answer"}, nil
	}
	v, err := strconv.ParseFloat(fmt.Sprint(value[1]), 64)
	if err != nil {
		return Result{Detail: fmt.Sprintf("value %v is not a number", value[1])}, nil
	}
	return Result{Passed: holds(s.Expect, v), Detail: fmt.Sprintf("value %g, want %s", v, s.Expect)}, nil
}
