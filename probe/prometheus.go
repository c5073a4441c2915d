package probe

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// prometheusProbe runs an instant query and compares the value of every
// series it returns with Expect ("< 5"): it passes when each does, so
// that one instance out of line breaks the steady state, as one series
// over the line fires a stop condition.
func prometheusProbe(ctx context.Context, p *Prober, s *Spec) (Result, error) {
	samples, err := p.Query(ctx, s.URL, s.Token, s.Query)
	if err != nil {
		return Result{}, err
	}
	if len(samples) == 0 {
		return Result{Detail: "the query returned no series"}, nil
	}
	for _, sm := range samples {
		if !holds(s.Expect, sm.Value) {
			detail := fmt.Sprintf("value %g, want %s", sm.Value, s.Expect)
			if len(samples) > 1 {
				detail = fmt.Sprintf("series %s of %d: %s", seriesName(sm.Labels), len(samples), detail)
			}
			return Result{Detail: detail}, nil
		}
	}
	if len(samples) > 1 {
		return Result{Passed: true, Detail: fmt.Sprintf("%d series, each %s", len(samples), s.Expect)}, nil
	}
	return Result{Passed: true, Detail: fmt.Sprintf("value %g, want %s", samples[0].Value, s.Expect)}, nil
}

// seriesName writes a series' labels as Prometheus does: {a="1", b="2"}.
func seriesName(labels map[string]string) string {
	names := slices.Sorted(maps.Keys(labels))
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%q", n, labels[n]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
