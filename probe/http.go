package probe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
)

// httpProbe sends a request and compares the status (and the body, with
// Body as a regexp) with the spec.
func httpProbe(ctx context.Context, p *Prober, s *Spec) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, s.Method, s.URL, nil)
	if err != nil {
		return Result{}, err
	}
	resp, err := p.cfg.HTTP.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	want, _ := strconv.Atoi(s.Expect)
	if resp.StatusCode != want {
		return Result{Detail: fmt.Sprintf("status %d, want %d", resp.StatusCode, want)}, nil
	}
	if s.Body != "" {
		if ok, _ := regexp.Match(s.Body, body); !ok {
			return Result{Detail: fmt.Sprintf("body does not match %q", s.Body)}, nil
		}
	}
	return Result{Passed: true, Detail: fmt.Sprintf("status %d", resp.StatusCode)}, nil
}
