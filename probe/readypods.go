package probe

import (
	"context"
	"fmt"
)

// readyPodsProbe compares the Ready share of the selected pods with
// Expect (">= 0.8").
func readyPodsProbe(ctx context.Context, p *Prober, s *Spec) (Result, error) {
	c, err := p.cluster(s.Kubeconfig)
	if err != nil {
		return Result{}, err
	}
	share, ready, total, err := c.ReadyShare(ctx, s.Namespace, s.Selector)
	if err != nil {
		return Result{}, err
	}
	return Result{Passed: holds(s.Expect, share), Detail: fmt.Sprintf("%d of %d pods Ready", ready, total)}, nil
}
