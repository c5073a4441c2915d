package target

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/kube"
)

// Pods is the pods of a namespace that a label selector matches, in a
// cluster, resolved anew each time a fault starts.
type Pods struct {
	spec   experiment.Target
	Client *kube.Client
	set    *Set
}

// PodIPs returns the addresses of every pod of the pods target name now,
// for a fault's to:.
func (p *Pods) PodIPs(ctx context.Context, name string) ([]string, error) {
	other, ok := p.set.byName[name].(*Pods)
	if !ok {
		return nil, fmt.Errorf("to: %s is not a pods target", name)
	}
	pods, err := other.Client.Pods(ctx, other.spec.Pods.Namespace, other.spec.Pods.Selector)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, pod := range pods {
		if pod.IP != "" {
			ips = append(ips, pod.IP)
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("to: no pod of target %s has an address yet", name)
	}
	return ips, nil
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

// checkAgentAccess refuses, before anything is touched, a run whose
// network faults on this target need agents that its account may not run.
func (p *Pods) checkAgentAccess(ctx context.Context, x *experiment.Experiment) error {
	if !slices.ContainsFunc(x.Faults, func(f experiment.Fault) bool { return x.InPods(f) == p.spec.Name }) {
		return nil
	}
	if err := p.Client.CheckAgentAccess(ctx, p.spec.Pods.Namespace); err != nil {
		return fmt.Errorf("target %s: %w", p.spec.Name, err)
	}
	return nil
}
