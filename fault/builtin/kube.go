package builtin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/target"
)

// The Kubernetes faults: pods deleted (their controllers replace them:
// nothing to revert), a Deployment or StatefulSet scaled (put back on
// revert), the selected pods' nodes cordoned (uncordoned on revert).

func podsTarget(f *fault.Fault) (*target.Pods, error) {
	t, ok := f.Target.(*target.Pods)
	if !ok {
		return nil, fmt.Errorf("fault %s: %s acts on a pods target", f.Spec.Name, f.Spec.Action.Kind())
	}
	return t, nil
}

// kubeRefused marks a Kubernetes call's definite failure as such.
func kubeRefused(err error) error {
	if err != nil && kube.Refused(err) {
		return fault.NotApplied(err)
	}
	return err
}

func podNames(pods []kube.Pod) string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func injectPodKill(ctx context.Context, f *fault.Fault, a experiment.PodKill) error {
	t, err := podsTarget(f)
	if err != nil {
		return err
	}
	pods, err := t.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	spec := t.Spec().Pods
	_, readyBefore, _, _ := t.Client.ReadyShare(ctx, spec.Namespace, spec.Selector)
	var grace *int64
	if !a.PodGrace {
		zero := int64(0)
		grace = &zero
	}
	for _, p := range pods {
		f.Hit("pod " + p.Namespace + "/" + p.Name)
	}
	err = f.Step(ctx, fault.Step{
		What: "delete pods " + podNames(pods),
		Do:   func(ctx context.Context) error { return kubeRefused(t.Client.DeletePods(ctx, pods, grace)) },
		// No undo: controllers replace pods.
	})
	if err != nil {
		return err
	}
	f.Evidence("%d pod(s) deleted", len(pods))
	if readyBefore == 0 {
		return nil
	}
	// Evidence of the recovery: how long until as many pods are Ready as
	// before, watched until the fault's window ends.
	killed := time.Now()
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan string, 1)
	f.Go("watching the replacements", func() {
		said := false
		defer func() {
			if !said {
				done <- "the replacements were not watched to the end"
			}
		}()
		lastReady := 0 // from the last look that worked: a look cut short by the window's end says nothing
		for {
			_, ready, _, err := t.Client.ReadyShare(wctx, spec.Namespace, spec.Selector)
			if err == nil && ready >= readyBefore {
				done <- fmt.Sprintf("replacements Ready (%d pods) %.1f s after the kill", ready, time.Since(killed).Seconds())
				said = true
				return
			}
			if err == nil {
				lastReady = ready
			}
			select {
			case <-wctx.Done():
				done <- fmt.Sprintf("%d pods Ready by the window's end (%d were before the kill)", lastReady, readyBefore)
				said = true
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	f.AtRevert(func() {
		stop()
		f.Evidence("%s", <-done)
	})
	return nil
}

func injectScale(ctx context.Context, f *fault.Fault, a experiment.Scale) error {
	t, err := podsTarget(f)
	if err != nil {
		return err
	}
	ns := t.Spec().Pods.Namespace
	before, err := t.Client.Replicas(ctx, ns, a.Resource, a.Name)
	if err != nil {
		return err
	}
	err = f.Step(ctx, fault.Step{
		Undo: &journal.Undo{Kind: "scale", Kubeconfig: t.Spec().Pods.Kubeconfig, Namespace: ns, Resource: a.Resource, Name: a.Name, Replicas: &before},
		Do: func(ctx context.Context) error {
			_, err := t.Client.Scale(ctx, ns, a.Resource, a.Name, int32(a.Replicas))
			return kubeRefused(err)
		},
		Revert: func(ctx context.Context) error {
			_, err := t.Client.Scale(ctx, ns, a.Resource, a.Name, before)
			return err
		},
	})
	if err != nil {
		return err
	}
	f.Hit(fmt.Sprintf("%s %s/%s", a.Resource, ns, a.Name))
	f.Evidence("replicas %d -> %d", before, a.Replicas)
	return nil
}

func injectCordon(ctx context.Context, f *fault.Fault, _ experiment.Cordon) error {
	t, err := podsTarget(f)
	if err != nil {
		return err
	}
	pods, err := t.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	cordoned := 0
	for _, p := range pods {
		if p.Node == "" || seen[p.Node] {
			continue
		}
		seen[p.Node] = true
		node := p.Node
		already := false
		err := f.Step(ctx, fault.Step{
			Undo: &journal.Undo{Kind: "uncordon", Kubeconfig: t.Spec().Pods.Kubeconfig, Node: node},
			Do: func(ctx context.Context) error {
				was, err := t.Client.Cordon(ctx, node, true)
				if was { // cordoned before: leave it so (it was read first, also when the write's answer is lost)
					already = true
					return fault.ErrNoChange
				}
				return kubeRefused(err)
			},
			Revert: func(ctx context.Context) error {
				_, err := t.Client.Cordon(ctx, node, false)
				return err
			},
		})
		f.Hit("node " + node)
		if err != nil {
			return err
		}
		if !already {
			cordoned++
		}
	}
	if len(seen) == 0 {
		return fmt.Errorf("target %s: the selected pods run on no node yet", t.Spec().Name)
	}
	f.Evidence("%d node(s) cordoned, %d already were", cordoned, len(seen)-cordoned)
	return nil
}

func undoScale(ctx context.Context, u *journal.Undo) (string, error) {
	if u.Replicas == nil {
		return "", fmt.Errorf("scale %s %s/%s: the journal does not say to how many replicas", u.Resource, u.Namespace, u.Name)
	}
	c, err := kube.Open(u.Kubeconfig)
	if err == nil {
		_, err = c.Scale(ctx, u.Namespace, u.Resource, u.Name, *u.Replicas)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("scaled %s %s/%s back to %d", u.Resource, u.Namespace, u.Name, *u.Replicas), nil
}

func undoUncordon(ctx context.Context, u *journal.Undo) (string, error) {
	c, err := kube.Open(u.Kubeconfig)
	if err == nil {
		_, err = c.Cordon(ctx, u.Node, false)
	}
	return "uncordoned node " + u.Node, err
}

func scaleInPlace(e journal.Event) string {
	u := e.Undo
	if u.Replicas != nil {
		return fmt.Sprintf("%s %s/%s scaled (to go back to %d replicas)", u.Resource, u.Namespace, u.Name, *u.Replicas)
	}
	return fmt.Sprintf("%s %s/%s scaled", u.Resource, u.Namespace, u.Name)
}

func cordonInPlace(e journal.Event) string { return "node " + e.Undo.Node + " cordoned" }
