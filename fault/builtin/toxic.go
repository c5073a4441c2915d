package builtin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/faultline/faultline/agent"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/proxy"
	"github.com/faultline/faultline/target"
)

// The proxy's faults: a toxic on each stream the fault names, and down
// (the proxy disabled), on an embedded proxy or one of a remote API.

func proxyTarget(f *fault.Fault) (*target.Proxy, error) {
	t, ok := f.Target.(*target.Proxy)
	if !ok {
		return nil, fmt.Errorf("fault %s: %s acts on a proxy target", f.Spec.Name, f.Spec.Action.Kind())
	}
	return t, nil
}

func streams(direction string) []proxy.Stream {
	switch direction {
	case "upstream":
		return []proxy.Stream{proxy.Upstream}
	case "both":
		return []proxy.Stream{proxy.Upstream, proxy.Downstream}
	}
	return []proxy.Stream{proxy.Downstream}
}

// toxicName is the name of a toxic a run adds: never one of the user's.
func toxicName(run, faultName string, s proxy.Stream) string {
	return fmt.Sprintf("faultline-%s-%s-%s", run, slug(faultName), s)
}

// slug is a fault's name in the characters that toxic, chain and table
// names take: others become '-'.
func slug(name string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '-'
	}, name)
}

// refused marks an API's definite refusal (a 4xx answer: nothing was
// changed) as such; other errors (no answer, a timeout, an interrupt, a
// 5xx) leave the outcome unknown.
func refused(err error) error {
	var ae *proxy.APIError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
		return fault.NotApplied(err)
	}
	return err
}

func injectToxic(ctx context.Context, f *fault.Fault, a experiment.ProxyToxic) error {
	t, err := proxyTarget(f)
	if err != nil {
		return err
	}
	tox := f.Spec.Toxicity
	if t.InPods != nil {
		var toxics []proxy.ToxicInfo
		for _, s := range streams(f.Spec.Direction) {
			toxics = append(toxics, proxy.ToxicInfo{Name: toxicName(f.Run, f.Spec.Name, s), Type: a.Effect.Type(), Stream: s.String(), Toxicity: tox, Attributes: proxy.Attributes(a.Effect)})
		}
		return injectPodIntercept(ctx, f, t, a.Effect.Type()+" toxic", &agent.Intercept{Toxics: toxics})
	}
	added := 0
	for _, s := range streams(f.Spec.Direction) {
		name := toxicName(f.Run, f.Spec.Name, s)
		if local := t.Local(); len(local) > 0 {
			// In the runner: it ends with it, so recover has nothing to undo.
			for _, p := range local {
				err = f.Step(ctx, fault.Step{
					What: "add toxic " + name + " to proxy " + t.Spec().Name + " on " + p.Listen(),
					Do: func(context.Context) error {
						_, err := p.AddToxic(proxy.Toxic{Name: name, Stream: s, Toxicity: &tox, Effect: a.Effect})
						return fault.NotApplied(err)
					},
					Revert: func(context.Context) error {
						if experiment.HTTPAction(a) { // evidence that it took effect
							f.Evidence("%s acted on %d request(s) on %s", a.Effect.Type(), p.ToxicHits(name), s)
						}
						return p.RemoveToxic(name)
					},
				})
				if err != nil {
					return err
				}
				f.Hit(fmt.Sprintf("proxy %s (%s, %s)", t.Spec().Name, p.Listen(), s))
			}
		} else {
			px := t.Spec().Proxy
			cl := t.Client
			info := proxy.ToxicInfo{Name: name, Type: a.Effect.Type(), Stream: s.String(), Toxicity: tox, Attributes: proxy.Attributes(a.Effect)}
			err = f.Step(ctx, fault.Step{
				Undo: &journal.Undo{Kind: "remove_toxic", API: px.API, Proxy: px.Name, Toxic: name},
				Do: func(ctx context.Context) error {
					_, err := cl.AddToxic(ctx, px.Name, info)
					return refused(err)
				},
				Revert: func(ctx context.Context) error { return ignoreNotFound(cl.RemoveToxic(ctx, px.Name, name)) },
			})
			if err != nil {
				return err
			}
			f.Hit(fmt.Sprintf("proxy %s at %s (%s)", px.Name, px.API, s))
		}
		added++
	}
	f.Evidence("%s toxic in place on %d stream(s)", a.Effect.Type(), added)
	return nil
}

func injectDown(ctx context.Context, f *fault.Fault, _ experiment.Down) error {
	t, err := proxyTarget(f)
	if err != nil {
		return err
	}
	if t.InPods != nil {
		return injectPodIntercept(ctx, f, t, "proxy down", &agent.Intercept{Down: true})
	}
	if local := t.Local(); len(local) > 0 {
		for _, p := range local {
			listen, upstream := p.Listen(), p.Upstream()
			err = f.Step(ctx, fault.Step{
				What:   "disable proxy " + t.Spec().Name + " on " + listen,
				Do:     func(context.Context) error { return fault.NotApplied(p.Update(listen, upstream, false)) },
				Revert: func(context.Context) error { return p.Update(listen, upstream, true) },
			})
			if err != nil {
				return err
			}
			f.Hit(fmt.Sprintf("proxy %s (%s)", t.Spec().Name, listen))
		}
	} else {
		px, cl := t.Spec().Proxy, t.Client
		err = f.Step(ctx, fault.Step{
			Undo: &journal.Undo{Kind: "enable_proxy", API: px.API, Proxy: px.Name},
			Do: func(ctx context.Context) error {
				_, err := cl.SetEnabled(ctx, px.Name, false)
				return refused(err)
			},
			Revert: func(ctx context.Context) error {
				_, err := cl.SetEnabled(ctx, px.Name, true)
				return err
			},
		})
		if err != nil {
			return err
		}
		f.Hit(fmt.Sprintf("proxy %s at %s", px.Name, px.API))
	}
	f.Evidence("proxy disabled: new connections refused")
	return nil
}

// ignoreNotFound makes removing what is gone already a success.
func ignoreNotFound(err error) error {
	var ae *proxy.APIError
	if errors.As(err, &ae) && ae.Status == 404 {
		return nil
	}
	return err
}

func undoRemoveToxic(ctx context.Context, u *journal.Undo) (string, error) {
	err := proxy.NewClient(u.API, apiToken(u)).RemoveToxic(ctx, u.Proxy, u.Toxic)
	return fmt.Sprintf("removed toxic %s from proxy %s at %s", u.Toxic, u.Proxy, u.API), ignoreNotFound(err)
}

func undoEnableProxy(ctx context.Context, u *journal.Undo) (string, error) {
	_, err := proxy.NewClient(u.API, apiToken(u)).SetEnabled(ctx, u.Proxy, true)
	return fmt.Sprintf("re-enabled proxy %s at %s", u.Proxy, u.API), err
}

func toxicInPlace(e journal.Event) string {
	return fmt.Sprintf("toxic %s on proxy %s at %s", e.Undo.Toxic, e.Undo.Proxy, e.Undo.API)
}

func downInPlace(e journal.Event) string {
	return fmt.Sprintf("proxy %s at %s disabled", e.Undo.Proxy, e.Undo.API)
}

// apiToken is an API's bearer token: never on disk, so the environment's.
func apiToken(u *journal.Undo) string {
	if u.Token != "" {
		return u.Token
	}
	return os.Getenv("FAULTLINE_TOKEN")
}
