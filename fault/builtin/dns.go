package builtin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/target"
)

// dns: rules in front of a resolver's own for the fault's window. The
// resolver lives in the runner: nothing is left for recover if it dies.

func injectDNS(ctx context.Context, f *fault.Fault, a experiment.DNS) error {
	t, ok := f.Target.(*target.DNS)
	if !ok {
		return fmt.Errorf("fault %s: dns acts on a dns target", f.Spec.Name)
	}
	rules, err := dnsfault.ParseRules(a.Rules)
	if err != nil {
		return err
	}
	if t.InPods != nil {
		return injectPodDNS(ctx, f, t, a)
	}
	for _, srv := range t.Servers() {
		faulted := srv.Faulted()
		err = f.Step(ctx, fault.Step{
			What: "dns rules " + strings.Join(a.Rules, ", ") + " on resolver " + t.Spec().Name + " on " + srv.Addr(),
			Do: func(context.Context) error {
				srv.SetRules(append(rules, srv.Rules()...))
				return nil
			},
			Revert: func(context.Context) error {
				// Only this fault's rules go: another fault on the resolver may
				// have added its own since, or taken its own away.
				srv.SetRules(withoutRules(srv.Rules(), rules))
				f.Evidence("rules answered %d queries", srv.Faulted()-faulted)
				return nil
			},
		})
		if err != nil {
			return err
		}
		f.Hit(fmt.Sprintf("dns %s (%s)", t.Spec().Name, srv.Addr()))
	}
	return nil
}

// withoutRules returns rules less one occurrence of each of drop.
func withoutRules(rules, drop []dnsfault.Rule) []dnsfault.Rule {
	out := slices.Clone(rules)
	for _, d := range drop {
		if i := slices.IndexFunc(out, func(r dnsfault.Rule) bool { return r.String() == d.String() }); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}
