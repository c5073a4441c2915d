package experiments

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the line numbers of stories.go from the shop's story markers")

// markerRE finds a story marker, story(NAME, NAME...), in a line.
var markerRE = regexp.MustCompile(`// .*story\(([a-z0-9, -]+)\)`)

// markers lists, by story name, every "examples/shop/FILE.go:LINE" whose
// line holds that story's marker.
func markers(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "shop", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the shop's code: %v", err)
	}
	out := map[string][]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			m := markerRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			for _, name := range strings.Split(m[1], ",") {
				ref := fmt.Sprintf("examples/shop/%s:%d", filepath.Base(f), i+1)
				out[strings.TrimSpace(name)] = append(out[strings.TrimSpace(name)], ref)
			}
		}
	}
	return out
}

// Every reference of a story is a line that holds the story's marker, and
// every marker is referenced by its story: the sentences point at the code
// that is the weakness or the fix, also after the code has moved.
func TestStoriesPointAtTheirMarkers(t *testing.T) {
	marked := markers(t)
	src, err := os.ReadFile("stories.go")
	if err != nil {
		t.Fatal(err)
	}
	fixed := src
	for _, name := range slices.Sorted(maps.Keys(Stories)) {
		s := Stories[name]
		refs := slices.Concat(s.WeaknessAt, s.FixAt)
		want := marked[name]
		var stale []string
		for _, r := range refs {
			if !slices.Contains(want, r) {
				stale = append(stale, r)
			}
		}
		var unreferenced []string
		for _, m := range want {
			if !slices.Contains(refs, m) {
				unreferenced = append(unreferenced, m)
			}
		}
		if len(stale) == 0 && len(unreferenced) == 0 {
			continue
		}
		if !*update {
			t.Errorf("story %s: references %q hold no story(%s) marker; markers %q are not referenced (go test -run %s -update rewrites the line numbers)",
				name, stale, name, unreferenced, t.Name())
			continue
		}
		moves, err := nearest(stale, unreferenced)
		if err != nil {
			t.Errorf("story %s: %v: fix stories.go by hand", name, err)
			continue
		}
		fixed = rewriteStory(t, fixed, name, moves)
	}
	if *update && !bytes.Equal(fixed, src) {
		if err := os.WriteFile("stories.go", fixed, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("stories.go: line numbers rewritten")
	}
}

// nearest pairs each stale reference with the unreferenced marker of the
// same file closest to it: code moves by a few lines, not across files.
func nearest(stale, free []string) (map[string]string, error) {
	if len(stale) != len(free) {
		return nil, fmt.Errorf("%d references without a marker, %d markers without a reference", len(stale), len(free))
	}
	moves := map[string]string{}
	taken := map[string]bool{}
	for _, r := range stale {
		file, line := splitRef(r)
		best, bestDist := "", -1
		for _, m := range free {
			mf, ml := splitRef(m)
			d := max(ml-line, line-ml)
			if mf == file && !taken[m] && (bestDist < 0 || d < bestDist) {
				best, bestDist = m, d
			}
		}
		if best == "" {
			return nil, fmt.Errorf("no marker left in %s for %s", file, r)
		}
		taken[best], moves[r] = true, best
	}
	return moves, nil
}

func splitRef(ref string) (string, int) {
	i := strings.LastIndex(ref, ":")
	n, _ := strconv.Atoi(ref[i+1:])
	return ref[:i], n
}

// rewriteStory replaces references in the entry of story name only.
func rewriteStory(t *testing.T, src []byte, name string, moves map[string]string) []byte {
	t.Helper()
	start := bytes.Index(src, []byte("\t"+strconv.Quote(name)+": {"))
	if start < 0 {
		t.Fatalf("stories.go has no entry %q", name)
	}
	end := bytes.Index(src[start:], []byte("\n\t},\n"))
	if end < 0 {
		t.Fatalf("stories.go: the entry %q does not end", name)
	}
	entry := string(src[start : start+end])
	for from, to := range moves {
		entry = strings.Replace(entry, strconv.Quote(from), strconv.Quote(to), 1)
	}
	return slices.Concat(src[:start], []byte(entry), src[start+end:])
}

// Every experiment the demo runs has its file and its story, in two
// sentences that say something; no story is of an experiment the demo does
// not run.
func TestEveryExperimentHasAStory(t *testing.T) {
	all := All()
	for _, name := range all {
		if _, err := File(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		s, ok := Stories[name]
		switch {
		case !ok:
			t.Errorf("%s has no story", name)
		case len(s.Weakness) < 60 || len(s.Fix) < 60:
			t.Errorf("%s: weakness %q, fix %q: want a sentence each", name, s.Weakness, s.Fix)
		case len(s.WeaknessAt) == 0 || len(s.FixAt) == 0:
			t.Errorf("%s: want a reference to the code of the weakness and of the fix", name)
		}
	}
	for name := range Stories {
		if !slices.Contains(all, name) {
			t.Errorf("story %s is of no experiment of the demo", name)
		}
	}
}

// The quarterly checklist: fifteen failures in four groups, each covered
// by an experiment the demo runs, except those marked planned, and every
// experiment of Checklist covering one.
func TestQuarterlyChecklist(t *testing.T) {
	if len(Quarterly) != 15 {
		t.Errorf("%d items, want 15", len(Quarterly))
	}
	var groups []string
	covered := map[string]bool{}
	for _, it := range Quarterly {
		if len(groups) == 0 || groups[len(groups)-1] != it.Group {
			if slices.Contains(groups, it.Group) {
				t.Errorf("group %q is split: items of a group stand together", it.Group)
			}
			groups = append(groups, it.Group)
		}
		known := slices.Contains(Order, it.Experiment) || slices.Contains(Checklist, it.Experiment)
		if known == (it.Planned != "") {
			t.Errorf("%q: experiment %q in the demo = %v, planned %q: want one or the other", it.Failure, it.Experiment, known, it.Planned)
		}
		covered[it.Experiment] = true
	}
	if len(groups) != 4 {
		t.Errorf("groups %q, want 4", groups)
	}
	var missing []string
	for _, name := range Checklist { // Order's are the blog's story; zone-outage is on no checklist
		if !covered[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("experiments that cover no checklist item: %q", missing)
	}
}
