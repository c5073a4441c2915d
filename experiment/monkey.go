package experiment

import (
	"fmt"
	"github.com/faultline/faultline/internal/decode"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Monkey is a monkey file: Chaos Monkey for processes. Within its schedule,
// each group loses one process now and then, at random.
type Monkey struct {
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
	Groups          []MonkeyGroup
}

// MonkeyGroup is one opted-in group of processes.
type MonkeyGroup struct {
	Name string
	Pos  Pos
	// Process finds the group's processes (match, pid or pidfile; restart
	// is run after a termination); or Pods, the pods of a namespace that
	// match a selector (their controllers replace them).
	Process *ProcessTarget
	Pods    *PodsTarget
	// Env, when set, keeps only processes whose environment has these
	// values: the opt-in label, e.g. CHAOS_MONKEY=enabled.
	Env    map[string]string
	Signal string
	// Check are probes: when one fails, the group's steady state is
	// already broken and the monkey leaves it alone.
	Check []Check
}

var (
	monkeyKeys   = []string{"version", "leashed", "schedule", "groups"}
	scheduleKeys = []string{"timezone", "days", "hours", "mean_time_between", "min_gap", "daily_cap"}
	groupKeys    = []string{"process", "pods", "env", "signal", "outage_check"}
	dayNames     = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
)

// ParseMonkeyFile reads a monkey file.
func ParseMonkeyFile(path string) (*Monkey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseMonkey(path, data)
}

// ParseMonkey reads a monkey file; every problem is reported at once, with
// its line, column and field.
func ParseMonkey(file string, data []byte) (*Monkey, error) {
	d := &decoder{decode.New(file)}
	root, err := decode.Document(file, data, "a monkey needs schedule and groups")
	if err != nil {
		return nil, err
	}
	m := &Monkey{File: file, Location: time.Local, From: 9 * time.Hour, To: 17 * time.Hour,
		Days:            []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		MeanTimeBetween: time.Hour, MinGap: 10 * time.Minute, DailyCap: 3}
	f := d.Mapping(root, "", monkeyKeys...)
	if n := f.Get("version"); n != nil && n.Value != "1" {
		d.Errorf(n, "version", "only version 1 is known")
	}
	if n := f.Get("leashed"); n != nil {
		m.Leashed = d.Boolean(n, "leashed")
	}
	if n := f.Get("schedule"); n != nil {
		d.schedule(n, m)
	}
	if n := f.Get("groups"); n != nil {
		gf := d.Mapping(n, "groups")
		for _, k := range gf.Keys {
			field := "groups." + k.Value
			g := MonkeyGroup{Name: k.Value, Pos: pos(k), Signal: "SIGKILL"}
			cf := d.Mapping(gf.Get(k.Value), field, groupKeys...)
			p, pd := cf.Get("process"), cf.Get("pods")
			switch {
			case p != nil && pd != nil:
				d.Errorf(k, field, "a group is processes or pods, not both")
			case pd != nil:
				g.Pods = d.podsTarget(pd, field+".pods")
			case p != nil:
				g.Process = d.process(p, field+".process")
				if g.Process.Launched() {
					d.Errorf(p, field+".process", "the monkey acts on processes already running: give match, pid or pidfile")
				}
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
				g.Signal = d.signal(s, field+".signal")
			}
			if c := cf.Get("outage_check"); c != nil {
				for _, ch := range d.checks(c, field+".outage_check") {
					if ch.Probe == nil {
						d.Errorf(c, field+".outage_check", "only probes here (GET URL, tcp HOST:PORT, command: [...]): there is no traffic to measure")
						continue
					}
					g.Check = append(g.Check, ch)
				}
				defaultReadyPods(g.Check, g.Pods) // the group's own cluster and namespace
			}
			m.Groups = append(m.Groups, g)
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

func (d *decoder) schedule(n *yaml.Node, m *Monkey) {
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
