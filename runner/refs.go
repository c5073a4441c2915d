package runner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/faultline/faultline/experiment"
)

// resolveRefs fills in references once every target has its ports:
// {NAME.port} and the like, {self} and {run_dir} anywhere in the
// experiment (r.fx, a filled copy; r.x keeps the text as written, for
// what results show), and {port} and {instance} in each launched
// instance's command and ready.
func (r *run) resolveRefs() error {
	self, _ := os.Executable()
	runDir, _ := filepath.Abs(r.opts.OutDir)
	var errs []error
	fill := func(s string) string {
		s = strings.ReplaceAll(strings.ReplaceAll(s, "{self}", self), "{run_dir}", runDir)
		out, err := r.targets.FillRefs(s)
		errs = append(errs, err)
		return out
	}
	r.fx = filledCopy(r.x, fill)
	r.targets.Resolve(r.fx, fill)
	for i, f := range r.faults {
		f.spec = r.fx.Faults[i]
	}
	if tr := r.fx.Traffic; tr != nil {
		r.traffic = tr.Requests
	}
	r.probes = map[int]*experiment.Probe{}
	for i, c := range r.fx.SteadyState {
		if c.Probe != nil {
			r.probes[i] = c.Probe
		}
	}
	return errors.Join(errs...)
}
