package runner

import (
	"reflect"
	"testing"

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
