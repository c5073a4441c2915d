package kubernetes_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/experiment"
)

// TestExperimentFilesValid: every experiment beside shop.yaml is a valid
// file once it is given the front's address and an agent image, and
// names the shop's pods by the labels shop.yaml gives them.
func TestExperimentFilesValid(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		if f == "shop.yaml" {
			continue
		}
		seen++
		x, err := experiment.ParseFile(f, experiment.Options{
			Vars:       map[string]string{"FRONT": "198.18.0.1:8080"},
			AgentImage: "registry.example/faultline:1",
		})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, tg := range x.Targets {
			if tg.Pods == nil {
				continue
			}
			if tg.Pods.Namespace != "shop" {
				t.Errorf("%s: target %s in namespace %q, want the default shop", f, tg.Name, tg.Pods.Namespace)
			}
			if !strings.Contains(tg.Pods.Selector, "app=") && !strings.Contains(tg.Pods.Selector, "zone") {
				t.Errorf("%s: target %s selects %q, not by shop.yaml's labels", f, tg.Name, tg.Pods.Selector)
			}
		}
	}
	if seen != 4 {
		t.Errorf("%d experiment files, want the four of the README", seen)
	}
}
