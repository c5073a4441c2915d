package target

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/kube"
)

// Pods is the pods of a namespace that a label selector matches, in a
// cluster, resolved anew each time a fault starts.
type Pods struct {
	spec   experiment.Target
	Client *kube.Client
}

// Spec is the target as the file gives it.
func (p *Pods) Spec() *experiment.Target { return &p.spec }

// Select resolves the target now, with a fault's selection (its tags are
// labels), at random with rnd, within max.
func (p *Pods) Select(ctx context.Context, sel experiment.Selection, rnd *rand.Rand, max int) ([]kube.Pod, error) {
	spec := p.spec.Pods
	selector := spec.Selector
	keys := make([]string, 0, len(sel.Tags))
	for k := range sel.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		selector += "," + k + "=" + sel.Tags[k]
	}
	pods, err := p.Client.Pods(ctx, spec.Namespace, selector)
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("target %s: no pod matches %s in namespace %s", p.spec.Name, selector, spec.Namespace)
	}
	return Choose(p.spec.Name, pods, sel, rnd, max, "pods")
}
