package runner

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/experiment"
)

// Every action an experiment file can give has a kind of fault that
// injects it: an unregistered one would only show as an error mid-run.
func TestEveryActionHasAKind(t *testing.T) {
	actions := []experiment.Action{
		experiment.ProxyToxic{}, experiment.Down{}, experiment.Kill{}, experiment.Stop{},
		experiment.Exec{}, experiment.DNS{}, experiment.Stress{}, experiment.PodKill{},
		experiment.Scale{}, experiment.Cordon{},
	}
	for _, a := range actions {
		if _, ok := kinds[reflect.TypeOf(a)]; !ok {
			t.Errorf("no kind of fault injects %T", a)
		}
	}
	if len(kinds) != len(actions) {
		t.Errorf("%d kinds registered for %d action types", len(kinds), len(actions))
	}
}

// Reverting one DNS fault takes away its own rules only, whatever other
// faults on the same resolver added or removed since.
func TestWithoutRules(t *testing.T) {
	parse := func(rules ...string) []dnsfault.Rule {
		out, err := dnsfault.ParseRules(rules)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := parse("payments.*=SERVFAIL")
	b := parse("db.*=NXDOMAIN")
	now := append(slices.Clone(b), a...) // b injected after a
	if got := fmt.Sprint(withoutRules(now, a)); got != fmt.Sprint(b) {
		t.Errorf("a reverted: %s, want b's rules %s", got, b)
	}
	if got := withoutRules(withoutRules(now, a), b); len(got) != 0 {
		t.Errorf("both reverted: %s left", got)
	}
}
