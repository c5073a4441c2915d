package probe

import (
	"context"
	"fmt"
	"net/url"
)

// prometheusProbe runs an instant query and compares its first value with
// Expect ("< 5").
func prometheusProbe(ctx context.Context, p *Prober, s *Spec) (Result, error) {
	samples, err := p.Query(ctx, s.URL, s.Token, s.Query)
	if err != nil {
		return Result{}, err
	}
	if len(samples) == 0 {
		return Result{Detail: "the query returned no series"}, nil
	}
	v := samples[0].Value
	return Result{Passed: holds(s.Expect, v), Detail: fmt.Sprintf("value %g, want %s", v, s.Expect)}, nil
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
