package builtin

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/experiment"
)

// Every action an experiment file can give has a family that injects it:
// an unregistered one would only show as an error mid-run.
// The action types are read from package experiment's source (every type
// with a Kind method), so a new one cannot be forgotten here too.
func TestEveryActionHasAFamily(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("../../experiment/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "Kind" {
				continue
			}
			if id, ok := fn.Recv.List[0].Type.(*ast.Ident); ok {
				actions = append(actions, id.Name)
			}
		}
	}
	if len(actions) < 10 {
		t.Fatalf("found %d action types in package experiment (%v): is the source there?", len(actions), actions)
	}
	var registered []string
	for _, typ := range Registry().ActionTypes() {
		if typ.PkgPath() != reflect.TypeFor[experiment.Down]().PkgPath() {
			t.Errorf("a family is registered for %v, not an action of package experiment", typ)
		}
		registered = append(registered, typ.Name())
	}
	slices.Sort(actions)
	slices.Sort(registered)
	if !slices.Equal(actions, registered) {
		t.Errorf("action types %v, families registered for %v", actions, registered)
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
