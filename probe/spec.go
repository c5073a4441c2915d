package probe

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/internal/decode"
)

// Spec is one probe as a file gives it.
type Spec struct {
	// Name names the probe in conditions (probe_success of NAME) and
	// charts; empty when the file gives none.
	Name   string
	Kind   string // http, tcp, command, prometheus, alert, ready_pods, or a kind registered with a Prober
	Method string // http
	// ready_pods: the pods whose Ready share is compared with Expect
	// ("OP FRACTION"); Namespace and Kubeconfig default to the first pods
	// target's.
	Namespace, Selector, Kubeconfig string
	URL                             string // http, prometheus (the server)
	Address                         string // tcp
	Command                         []string
	Query                           string // prometheus
	Alert                           string // alert: passes while this alert is not firing
	Token                           string // prometheus, alert: a bearer token
	Expect                          string // http: a status; command: an exit status; prometheus: "OP VALUE"
	Body                            string // http: a regexp the body must match
	// Args are a registered kind's settings, as the file gives them.
	Args map[string]string
}

// Text is how results, reports and plans name the probe, e.g. "probe GET
// http://127.0.0.1:8080/health expects 200 and body ~ ok".
func (p *Spec) Text() string {
	switch p.Kind {
	case "tcp":
		return "probe tcp " + p.Address
	case "command":
		return "probe command " + strings.Join(p.Command, " ") + " exits " + p.Expect
	case "prometheus":
		return fmt.Sprintf("probe prometheus %s: %s %s", p.URL, p.Query, p.Expect)
	case "alert":
		return fmt.Sprintf("alert %s not firing (prometheus %s)", p.Alert, p.URL)
	case "ready_pods":
		op, v, _ := strings.Cut(p.Expect, " ")
		f, _ := strconv.ParseFloat(v, 64)
		return fmt.Sprintf("ready_pods(%s/%s) %s %s%%", p.Namespace, p.Selector, op, strconv.FormatFloat(f*100, 'g', -1, 64))
	case "http":
		text := fmt.Sprintf("probe %s %s expects %s", p.Method, p.URL, p.Expect)
		if p.Body != "" {
			text += " and body ~ " + p.Body
		}
		return text
	}
	var args []string
	for _, k := range slices.Sorted(maps.Keys(p.Args)) {
		args = append(args, k+"="+p.Args[k])
	}
	return "probe " + p.Kind + " " + strings.Join(args, " ")
}

// Ops are the comparisons an expect may use.
var Ops = []string{"<", "<=", ">", ">="}

// Compare reports whether v OP limit.
func Compare(op string, v, limit float64) bool {
	switch op {
	case "<":
		return v < limit
	case "<=":
		return v <= limit
	case ">":
		return v > limit
	default:
		return v >= limit
	}
}

// holds compares v with an expect of the form "OP VALUE" ("< 5").
func holds(expect string, v float64) bool {
	op, limitText, _ := strings.Cut(strings.TrimSpace(expect), " ")
	limit, _ := strconv.ParseFloat(strings.TrimSpace(limitText), 64)
	return Compare(op, v, limit)
}

// ValidExpect checks "OP NUMBER".
func ValidExpect(s string) bool {
	op, v, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || !slices.Contains(Ops, op) {
		return false
	}
	_, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	return err == nil
}

// SplitRequest reads "METHOD URL" or a bare URL.
func SplitRequest(s string) (method, url string) {
	if m, u, ok := strings.Cut(strings.TrimSpace(s), " "); ok {
		return strings.ToUpper(m), strings.TrimSpace(u)
	}
	return "GET", strings.TrimSpace(s)
}

// Keys are the keys of a probe's own mapping form (probe: {command: ...}),
// beside the keys of the entry that holds it (expect, body, query).
var Keys = []string{"command", "prometheus"}

// Decode reads a probe: n is the value of an entry's probe: key ("GET
// URL", "tcp HOST:PORT", {command: [...]}, {prometheus: URL}, or
// {KIND: VALUE} for a kind in extra), entry the entry's other fields
// (expect, body, query), field the entry's name in messages. Problems go
// to d.
func Decode(d *decode.Decoder, n *yaml.Node, entry decode.Fields, field string, extra ...string) *Spec {
	p := &Spec{}
	if n.Kind == yaml.MappingNode {
		pf := d.Mapping(n, field+".probe", append(slices.Clone(Keys), extra...)...)
		switch {
		case pf.Get("command") != nil:
			p.Kind, p.Command, p.Expect = "command", d.StrList(pf.Get("command"), field+".probe.command", false), "0"
		case pf.Get("prometheus") != nil:
			p.Kind, p.URL = "prometheus", d.Str(pf.Get("prometheus"), field+".probe.prometheus")
		case len(pf.Keys) == 1 && slices.Contains(extra, pf.Keys[0].Value):
			k := pf.Keys[0].Value
			p.Kind, p.Args = k, map[string]string{}
			v := pf.Get(k)
			if v.Kind == yaml.ScalarNode {
				p.Args[""] = d.Str(v, field+".probe."+k)
				break
			}
			af := d.Mapping(v, field+".probe."+k)
			for _, ak := range af.Keys {
				p.Args[ak.Value] = d.Str(af.Get(ak.Value), field+".probe."+k+"."+ak.Value)
			}
		default:
			d.Errorf(n, field+".probe", "want command: [...] or prometheus: URL")
		}
	} else {
		s := d.Str(n, field+".probe")
		if addr, ok := strings.CutPrefix(s, "tcp "); ok {
			p.Kind, p.Address = "tcp", strings.TrimSpace(addr)
		} else {
			p.Kind = "http"
			p.Method, p.URL = SplitRequest(s)
			p.Expect = "200"
			if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
				d.Errorf(n, field+".probe", "want METHOD URL, tcp HOST:PORT, command: [...] or prometheus: URL; got %q", s)
			}
		}
	}
	if v := entry.Get("expect"); v != nil {
		p.Expect = d.Str(v, field+".expect")
		switch p.Kind {
		case "http", "command":
			if _, err := strconv.Atoi(p.Expect); err != nil {
				d.Errorf(v, field+".expect", "want a status number, got %q", p.Expect)
			}
		case "prometheus":
			if !ValidExpect(p.Expect) {
				d.Errorf(v, field+".expect", "want OP VALUE such as < 5, got %q", p.Expect)
			}
		case "tcp":
			d.Errorf(v, field+".expect", "a tcp probe passes when it connects: no expect")
		}
	}
	if v := entry.Get("query"); v != nil {
		p.Query = d.Str(v, field+".query")
		if p.Kind != "prometheus" {
			d.Errorf(v, field+".query", "only a prometheus probe has a query")
		}
	} else if p.Kind == "prometheus" {
		d.Errorf(n, field+".query", "a prometheus probe needs a query")
	}
	if v := entry.Get("body"); v != nil {
		p.Body = d.Str(v, field+".body")
		if _, err := regexp.Compile(p.Body); err != nil {
			d.Errorf(v, field+".body", "not a valid regexp: %v", err)
		}
	}
	return p
}

// ParseReadyPods reads "ready_pods(app=checkout) >= 80%" or, with a
// namespace, "ready_pods(shop/app=checkout) >= 80%": the share of the pods
// that are Ready, checked like a probe every tick.
func ParseReadyPods(s string) (*Spec, error) {
	rest := strings.TrimPrefix(strings.TrimSpace(s), "ready_pods(")
	// The last ')': a set-based selector has its own, "app in (web,api)".
	i := strings.LastIndex(rest, ")")
	ok := i >= 0
	sel, cond := rest[:max(i, 0)], rest[i+1:]
	if !ok || strings.TrimSpace(sel) == "" {
		return nil, fmt.Errorf("want ready_pods(SELECTOR) OP PERCENT, e.g. ready_pods(app=checkout) >= 80%%; got %q", s)
	}
	p := &Spec{Kind: "ready_pods", Selector: strings.TrimSpace(sel)}
	if ns, selector, ok := strings.Cut(p.Selector, "/"); ok && !strings.ContainsAny(ns, "=!,") {
		p.Namespace, p.Selector = ns, selector
	}
	op, val, ok := strings.Cut(strings.TrimSpace(cond), " ")
	val = strings.TrimSpace(val)
	pct, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
	if !ok || !slices.Contains(Ops, op) || !strings.HasSuffix(val, "%") || err != nil || pct < 0 || pct > 100 {
		return nil, fmt.Errorf("want ready_pods(SELECTOR) OP PERCENT, e.g. ready_pods(app=checkout) >= 80%%; got %q", s)
	}
	p.Expect = op + " " + strconv.FormatFloat(pct/100, 'g', -1, 64)
	return p, nil
}
