package monkey

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/internal/decode"
	"github.com/faultline/faultline/probe"
	"github.com/faultline/faultline/process"
)

// Config is a monkey file: Chaos Monkey for processes and pods. Within its
// schedule, each group loses one member now and then, at random.
type Config struct {
	File string
	// Leashed decides and journals but terminates nothing.
	Leashed bool
	// Location, Days and the [From, To) time of day are when terminations
	// may happen.
	Location *time.Location
	Days     []time.Weekday
	From, To time.Duration // since midnight
	// MeanTimeBetween is the mean time between terminations in a group,
	// counted in scheduled time; MinGap the least; DailyCap the most a day.
	MeanTimeBetween time.Duration
	MinGap          time.Duration
	DailyCap        int
	Groups          []Group
}

// Group is one opted-in group of processes or pods.
type Group struct {
	Name string
	Pos  decode.Pos
	// Processes finds the group's processes; or Pods, the pods of a
	// namespace that match a selector (their controllers replace them).
	Processes *Processes
	Pods      *Pods
	// Env, when set, keeps only processes whose environment has these
	// values: the opt-in label, e.g. CHAOS_MONKEY=enabled.
	Env    map[string]string
	Signal string
	// Check are probes: when one fails, the group's steady state is
	// already broken and the monkey leaves it alone.
	Check []*probe.Spec
}

// Processes are processes that already run: one of Match, PID or
// PIDFile; Restart is run after a termination.
type Processes struct {
	Match           string // a regexp on the command line
	PID             int
	PIDFile         string
	Restart         []string
	AllowOtherUsers bool
}

// Selector is how package process finds them.
func (p *Processes) Selector() process.Selector {
	s := process.Selector{PID: p.PID, PIDFile: p.PIDFile, AllowOtherUsers: p.AllowOtherUsers}
	if p.Match != "" {
		s.Match, _ = regexp.Compile(p.Match) // checked when the file was read
	}
	return s
}

// Pods are the pods of Namespace that match Selector, in the cluster of
// Kubeconfig (else $KUBECONFIG, ~/.kube/config, in-cluster).
type Pods struct {
	Namespace, Selector, Kubeconfig string
}

var (
	fileKeys     = []string{"version", "leashed", "schedule", "groups"}
	scheduleKeys = []string{"timezone", "days", "hours", "mean_time_between", "min_gap", "daily_cap"}
	groupKeys    = []string{"process", "pods", "env", "signal", "outage_check"}
	processKeys  = []string{"match", "pid", "pidfile", "restart", "allow_other_users", "command"}
	podsKeys     = []string{"namespace", "selector", "kubeconfig"}
	checkKeys    = []string{"probe", "expect", "body", "query"}
	dayNames     = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
)

// ParseFile reads a monkey file.
func ParseFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads a monkey file; every problem is reported at once, with its
// line, column and field (*decode.Error values, errors.Join'ed).
func Parse(file string, data []byte) (*Config, error) {
	d := decode.New(file)
	root, err := decode.Document(file, data, "a monkey needs schedule and groups")
	if err != nil {
		return nil, err
	}
	m := &Config{File: file, Location: time.Local, From: 9 * time.Hour, To: 17 * time.Hour,
		Days:            []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		MeanTimeBetween: time.Hour, MinGap: 10 * time.Minute, DailyCap: 3}
	f := d.Mapping(root, "", fileKeys...)
	if n := f.Get("version"); n != nil && n.Value != "1" {
		d.Errorf(n, "version", "only version 1 is known")
	}
	if n := f.Get("leashed"); n != nil {
		m.Leashed = d.Boolean(n, "leashed")
	}
	if n := f.Get("schedule"); n != nil {
		schedule(d, n, m)
	}
	if n := f.Get("groups"); n != nil {
		gf := d.Mapping(n, "groups")
		for _, k := range gf.Keys {
			m.Groups = append(m.Groups, parseGroup(d, k, gf.Get(k.Value)))
		}
		if len(gf.Keys) == 0 && n.Kind == yaml.MappingNode {
			d.Errorf(n, "groups", "empty: opt in at least one group")
		}
	} else {
		d.Errorf(root, "groups", "required: the groups that opted in")
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

func parseGroup(d *decode.Decoder, k, n *yaml.Node) Group {
	field := "groups." + k.Value
	g := Group{Name: k.Value, Pos: decode.PosOf(k), Signal: "SIGKILL"}
	cf := d.Mapping(n, field, groupKeys...)
	p, pd := cf.Get("process"), cf.Get("pods")
	switch {
	case p != nil && pd != nil:
		d.Errorf(k, field, "a group is processes or pods, not both")
	case pd != nil:
		g.Pods = pods(d, pd, field+".pods")
	case p != nil:
		g.Processes = processes(d, p, field+".process")
	default:
		d.Errorf(k, field+".process", "required: which processes (process: {match, pid or pidfile}) or pods (pods: {namespace, selector})")
	}
	if e := cf.Get("env"); e != nil {
		g.Env = map[string]string{}
		ef := d.Mapping(e, field+".env")
		for _, ek := range ef.Keys {
			g.Env[ek.Value] = d.Str(ef.Get(ek.Value), field+".env."+ek.Value)
		}
	}
	if s := cf.Get("signal"); s != nil {
		sig, ok := process.ParseSignal(d.Str(s, field+".signal"))
		if !ok {
			d.Errorf(s, field+".signal", "unknown signal %q%s", sig, decode.Suggest(sig, process.SignalNames()))
		}
		g.Signal = sig
	}
	if c := cf.Get("outage_check"); c != nil {
		g.Check = checks(d, c, field+".outage_check", g.Pods)
	}
	return g
}

func processes(d *decode.Decoder, n *yaml.Node, field string) *Processes {
	f := d.Mapping(n, field, processKeys...)
	p := &Processes{}
	ways := 0
	if c := f.Get("match"); c != nil {
		ways++
		p.Match = d.Str(c, field+".match")
		if _, err := regexp.Compile(p.Match); err != nil {
			d.Errorf(c, field+".match", "not a valid regexp: %v", err)
		}
	}
	if c := f.Get("pid"); c != nil {
		ways++
		if p.PID = d.Integer(c, field+".pid"); p.PID <= 1 {
			d.Errorf(c, field+".pid", "want a process id above 1")
		}
	}
	if c := f.Get("pidfile"); c != nil {
		ways++
		p.PIDFile = d.Str(c, field+".pidfile")
	}
	if f.Get("command") != nil || ways != 1 { // command is known, to say so
		d.Errorf(n, field, "the monkey acts on processes already running: give exactly one of match, pid or pidfile")
	}
	if c := f.Get("restart"); c != nil {
		p.Restart = d.StrList(c, field+".restart", false)
	}
	if c := f.Get("allow_other_users"); c != nil {
		p.AllowOtherUsers = d.Boolean(c, field+".allow_other_users")
	}
	return p
}

func pods(d *decode.Decoder, n *yaml.Node, field string) *Pods {
	f := d.Mapping(n, field, podsKeys...)
	p := &Pods{Namespace: "default"}
	if v := f.Get("namespace"); v != nil {
		p.Namespace = d.Str(v, field+".namespace")
	}
	if v := f.Get("selector"); v != nil {
		p.Selector = d.Str(v, field+".selector")
	} else {
		d.Errorf(n, field+".selector", "required: a label selector, e.g. app=checkout")
	}
	if v := f.Get("kubeconfig"); v != nil {
		p.Kubeconfig = d.Str(v, field+".kubeconfig")
	}
	return p
}

// checks reads an outage check: probes only, since there is no traffic
// to measure; ready_pods without a namespace are the group's.
func checks(d *decode.Decoder, n *yaml.Node, field string, pods *Pods) []*probe.Spec {
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, field, "want a list of probes, got %s", decode.KindName(n))
		return nil
	}
	var out []*probe.Spec
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		var p *probe.Spec
		switch {
		case c.Kind == yaml.ScalarNode && strings.HasPrefix(strings.TrimSpace(c.Value), "ready_pods("):
			var err error
			if p, err = probe.ParseReadyPods(c.Value); err != nil {
				d.Errorf(c, f, "%v", err)
				continue
			}
		case c.Kind == yaml.MappingNode:
			cf := d.Mapping(c, f, checkKeys...)
			pn := cf.Get("probe")
			if pn == nil {
				d.Errorf(c, f, "only probes here (GET URL, tcp HOST:PORT, command: [...]): there is no traffic to measure")
				continue
			}
			p = probe.Decode(d, pn, cf, f)
		default:
			d.Errorf(c, field, "only probes here (GET URL, tcp HOST:PORT, command: [...]): there is no traffic to measure")
			continue
		}
		if p.Kind == "ready_pods" {
			if pods != nil {
				if p.Namespace == "" {
					p.Namespace = pods.Namespace
				}
				p.Kubeconfig = pods.Kubeconfig
			}
			if p.Namespace == "" {
				p.Namespace = "default"
			}
		}
		out = append(out, p)
	}
	return out
}

func schedule(d *decode.Decoder, n *yaml.Node, m *Config) {
	f := d.Mapping(n, "schedule", scheduleKeys...)
	if v := f.Get("timezone"); v != nil {
		loc, err := time.LoadLocation(d.Str(v, "schedule.timezone"))
		if err != nil {
			d.Errorf(v, "schedule.timezone", "unknown time zone %q: want an IANA name such as Europe/Paris or UTC", v.Value)
		} else {
			m.Location = loc
		}
	}
	if v := f.Get("days"); v != nil {
		m.Days = nil
		for i, s := range d.StrList(v, "schedule.days", true) {
			day, ok := dayNames[strings.ToLower(s)[:min(3, len(s))]]
			if !ok || len(s) < 3 {
				d.Errorf(v, fmt.Sprintf("schedule.days[%d]", i), "unknown day %q: want mon, tue, wed, thu, fri, sat or sun", s)
				continue
			}
			m.Days = append(m.Days, day)
		}
	}
	if v := f.Get("hours"); v != nil {
		from, to, ok := strings.Cut(d.Str(v, "schedule.hours"), "-")
		a, errA := clock(from)
		b, errB := clock(to)
		if !ok || errA != nil || errB != nil || a >= b {
			d.Errorf(v, "schedule.hours", "want HH:MM-HH:MM, the first before the second, e.g. 09:00-17:00; got %q", v.Value)
		} else {
			m.From, m.To = a, b
		}
	}
	if v := f.Get("mean_time_between"); v != nil {
		m.MeanTimeBetween = d.Positive(v, "schedule.mean_time_between")
	}
	if v := f.Get("min_gap"); v != nil {
		m.MinGap = d.Duration(v, "schedule.min_gap")
	}
	if v := f.Get("daily_cap"); v != nil {
		if m.DailyCap = d.Integer(v, "schedule.daily_cap"); m.DailyCap < 1 {
			d.Errorf(v, "schedule.daily_cap", "must be at least 1")
		}
	}
}

// clock reads HH:MM as a time of day.
func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		if strings.TrimSpace(s) == "24:00" {
			return 24 * time.Hour, nil
		}
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}
