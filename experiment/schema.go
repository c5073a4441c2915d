package experiment

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	"github.com/invopop/jsonschema"
)

// The file's shape, for the JSON Schema only: Parse reads files itself, to
// report every problem with its place. TestSchemaMatchesParser keeps these
// types and the parser's keys in step.
type (
	fileDoc struct {
		Version     int                  `json:"version,omitempty" jsonschema:"enum=1" jsonschema_description:"File format version; only 1"`
		Name        string               `json:"name" jsonschema_description:"The experiment's name"`
		Description string               `json:"description,omitempty"`
		Hypothesis  string               `json:"hypothesis,omitempty" jsonschema_description:"What should stay true while the faults are in place"`
		Targets     map[string]targetDoc `json:"targets,omitempty" jsonschema_description:"What the faults act on, by name"`
		Traffic     *trafficDoc          `json:"traffic,omitempty" jsonschema_description:"Constant-rate load during the whole run"`
		SteadyState []checkDoc           `json:"steady_state,omitempty" jsonschema_description:"Conditions and probes that must hold in the baseline, during the faults and in recovery"`
		Baseline    durationDoc          `json:"baseline,omitempty" jsonschema_description:"How long to measure before injecting (default 5s)"`
		Inject      durationDoc          `json:"inject,omitempty" jsonschema_description:"Length of the inject phase (default: the latest end among faults with a duration)"`
		Faults      []faultDoc           `json:"faults"`
		Recovery    durationDoc          `json:"recovery,omitempty" jsonschema_description:"How long the steady state may take to come back after rollback (default 10s)"`
		StopWhen    []stopConditionDoc   `json:"stop_when,omitempty" jsonschema_description:"Any one true aborts the run at once and rolls back"`
		MaxTargets  int                  `json:"max_targets,omitempty" jsonschema:"minimum=1" jsonschema_description:"Most instances one fault may hit (default 10)"`
		MaxDuration durationDoc          `json:"max_duration,omitempty" jsonschema_description:"Longest the run may last (default 15m)"`
		Network     *networkDoc          `json:"network,omitempty" jsonschema_description:"The run's network for isolated targets"`
	}
	networkDoc struct {
		Subnet string `json:"subnet,omitempty" jsonschema_description:"IPv4 CIDR the isolated instances get addresses from (default: a /24 inside 198.18.0.0/15)"`
	}
	partitionDoc struct {
		To     any  `json:"to" jsonschema_description:"a target name, IP, CIDR, IP:PORT, CIDR:PORT or :PORT, a list of them, or {tags: {...}}"`
		Reject bool `json:"reject,omitempty" jsonschema_description:"answer with TCP RST / ICMP unreachable instead of dropping"`
	}
	packetLossDoc struct {
		Percent  int    `json:"percent" jsonschema:"minimum=1,maximum=100"`
		To       any    `json:"to" jsonschema_description:"a target name, IP, CIDR, IP:PORT, CIDR:PORT or :PORT, a list of them, or {tags: {...}}"`
		Protocol string `json:"protocol,omitempty" jsonschema:"enum=tcp,enum=udp,enum=all"`
	}
	targetDoc struct {
		Process   *processDoc       `json:"process,omitempty"`
		Proxy     *proxyDoc         `json:"proxy,omitempty"`
		DNS       *dnsDoc           `json:"dns,omitempty"`
		Pods      *podsDoc          `json:"pods,omitempty"`
		Intercept *interceptDoc     `json:"intercept,omitempty" jsonschema_description:"the TCP connections a process target opens to to:, through a proxy in its network namespace"`
		Tags      map[string]tagDoc `json:"tags,omitempty" jsonschema_description:"Labels; a list is assigned round-robin by instance"`
	}
	dnsDoc struct {
		Listen    string            `json:"listen,omitempty" jsonschema_description:"HOST:PORT, UDP and TCP (default 127.0.0.1:0)"`
		Upstream  string            `json:"upstream,omitempty" jsonschema_description:"resolver HOST:PORT for other names"`
		Records   map[string]string `json:"records,omitempty" jsonschema_description:"name: IP (or {TARGET.ip}, {host.ip}), answered by the resolver itself"`
		Intercept *dnsInterceptDoc  `json:"intercept,omitempty" jsonschema_description:"answer the DNS queries a process target sends to any resolver"`
	}
	dnsInterceptDoc struct {
		From string `json:"from" jsonschema_description:"an isolated process target"`
	}
	interceptDoc struct {
		From             string `json:"from" jsonschema_description:"the process target whose connections are intercepted"`
		To               any    `json:"to" jsonschema_description:"a target name, HOST:PORT, CIDR:PORT or :PORT, or a list of them"`
		AllowHostNetwork bool   `json:"allow_host_network,omitempty" jsonschema_description:"let from be in the host's own network namespace"`
	}
	cpuDoc struct {
		Workers int `json:"workers,omitempty" jsonschema:"minimum=1"`
		Load    int `json:"load,omitempty" jsonschema:"minimum=1,maximum=100" jsonschema_description:"percent each worker is busy"`
	}
	memoryDoc struct {
		Size string `json:"size" jsonschema_description:"e.g. 512MiB"`
		Rate string `json:"rate,omitempty" jsonschema_description:"grow by this much a second, e.g. 64MiB"`
	}
	diskFillDoc struct {
		Path      string `json:"path" jsonschema_description:"a directory on the file system to fill"`
		Free      string `json:"free,omitempty" jsonschema_description:"leave this much free: a size or a percentage (5%)"`
		Fill      string `json:"fill,omitempty" jsonschema_description:"write exactly this much"`
		AllowRoot bool   `json:"allow_root,omitempty"`
	}
	connectionsDoc struct {
		Address  string `json:"address,omitempty"`
		Count    int    `json:"count,omitempty" jsonschema:"minimum=1"`
		Mode     string `json:"mode,omitempty" jsonschema:"enum=idle,enum=slow"`
		Protocol string `json:"protocol,omitempty" jsonschema:"enum=tcp,enum=postgres"`
		DSN      string `json:"dsn,omitempty"`
	}
	podsDoc struct {
		Namespace  string `json:"namespace,omitempty" jsonschema_description:"default: default"`
		Selector   string `json:"selector" jsonschema_description:"label selector, e.g. app=checkout"`
		Kubeconfig string `json:"kubeconfig,omitempty"`
		Container  string `json:"container,omitempty" jsonschema_description:"the container an in-pod fault's agent joins (its process namespace); default: the pod's first"`
		AgentImage string `json:"agent_image,omitempty" jsonschema_description:"image of the agent that network faults run in an ephemeral container of each pod (the faultline binary as entrypoint); run --agent-image gives a default"`
	}
	podKillDoc struct {
		Grace string `json:"grace,omitempty" jsonschema:"enum=0,enum=0s,enum=pod"`
	}
	scaleDoc struct {
		Kind     string `json:"kind,omitempty" jsonschema:"enum=deployment,enum=statefulset"`
		Name     string `json:"name"`
		Replicas int    `json:"replicas" jsonschema:"minimum=0"`
	}
	dnsFaultDoc struct {
		Rules []string `json:"rules" jsonschema_description:"PATTERN=NXDOMAIN|SERVFAIL|REFUSED|TIMEOUT|DELAY(d)|ADDRESS(ip)"`
	}
	processDoc struct {
		Command         []string `json:"command,omitempty" jsonschema_description:"Launched by the run; {port} and {instance} are filled per instance"`
		Ready           string   `json:"ready,omitempty" jsonschema_description:"URL polled until 2xx, or tcp://HOST:PORT, before the baseline"`
		Instances       int      `json:"instances,omitempty" jsonschema:"minimum=1"`
		Restart         []string `json:"restart,omitempty" jsonschema_description:"Command that restarts a process the run did not launch"`
		Match           string   `json:"match,omitempty" jsonschema_description:"Regexp on the command line of running processes"`
		PID             int      `json:"pid,omitempty"`
		PIDFile         string   `json:"pidfile,omitempty"`
		AllowOtherUsers bool     `json:"allow_other_users,omitempty" jsonschema_description:"Allow processes of another user than faultline's (a database server's own user)"`
		Network         string   `json:"network,omitempty" jsonschema:"enum=isolated" jsonschema_description:"isolated: each launched instance in a network namespace of its own ({ip}, {NAME.ip})"`
	}
	proxyDoc struct {
		Listen   string `json:"listen,omitempty" jsonschema_description:"Embedded proxy: address to listen on"`
		Upstream string `json:"upstream,omitempty" jsonschema_description:"Embedded proxy: address to forward to"`
		API      string `json:"api,omitempty" jsonschema_description:"Remote proxy: URL of a Toxiproxy-compatible API"`
		Name     string `json:"name,omitempty" jsonschema_description:"Remote proxy: its name"`
		Token    string `json:"token,omitempty" jsonschema_description:"Remote proxy: bearer token (better: ${VAR})"`
	}
	trafficDoc struct {
		Rate     string       `json:"rate" jsonschema:"pattern=^[0-9.]+/s$" jsonschema_description:"Requests per second, e.g. 40/s"`
		Timeout  durationDoc  `json:"timeout,omitempty"`
		Requests []requestDoc `json:"requests"`
	}
	requestObj struct {
		Name    string            `json:"name,omitempty"`
		Method  string            `json:"method,omitempty"`
		URL     string            `json:"url,omitempty"`
		Headers map[string]string `json:"headers,omitempty"`
		Body    string            `json:"body,omitempty"`
		Weight  float64           `json:"weight,omitempty"`
		TCP     *tcpRequestDoc    `json:"tcp,omitempty" jsonschema_description:"connect, send, expect a reply"`
		Redis   *redisRequestDoc  `json:"redis,omitempty" jsonschema_description:"one Redis command"`
		SQL     *sqlRequestDoc    `json:"sql,omitempty" jsonschema_description:"one PostgreSQL query"`
		DNS     *dnsRequestDoc    `json:"dns,omitempty" jsonschema_description:"one DNS query"`
		GRPC    *grpcRequestDoc   `json:"grpc,omitempty" jsonschema_description:"a gRPC health check or unary call"`
	}
	tcpRequestDoc struct {
		Addr         string `json:"addr"`
		Send         string `json:"send,omitempty"`
		Expect       string `json:"expect,omitempty" jsonschema_description:"what the reply must begin with"`
		ExpectRegexp string `json:"expect_regexp,omitempty"`
	}
	redisRequestDoc struct {
		Addr     string   `json:"addr"`
		Command  []string `json:"command"`
		DB       int      `json:"db,omitempty"`
		Username string   `json:"username,omitempty"`
		Password string   `json:"password,omitempty"`
	}
	sqlRequestDoc struct {
		DSN      string   `json:"dsn"`
		Query    string   `json:"query"`
		Args     []string `json:"args,omitempty"`
		MaxConns int      `json:"max_conns,omitempty"`
	}
	dnsRequestDoc struct {
		Server       string `json:"server"`
		Name         string `json:"name"`
		Type         string `json:"type,omitempty" jsonschema_description:"A, AAAA, MX, TXT, ... (default A)"`
		Net          string `json:"net,omitempty" jsonschema:"enum=udp,enum=tcp"`
		ExpectAnswer bool   `json:"expect_answer,omitempty" jsonschema_description:"NXDOMAIN and an empty answer count as errors"`
	}
	grpcRequestDoc struct {
		Target     string `json:"target"`
		Service    string `json:"service,omitempty" jsonschema_description:"health check: the service asked about"`
		Method     string `json:"method,omitempty" jsonschema_description:"a unary method, /package.Service/Method"`
		BodyBase64 string `json:"body_base64,omitempty" jsonschema_description:"the encoded request message, base64"`
	}
	checkObj struct {
		Condition  conditionDoc `json:"condition,omitempty"`
		Probe      probeDoc     `json:"probe,omitempty"`
		Expect     any          `json:"expect,omitempty" jsonschema_description:"HTTP status, exit status, or OP VALUE for Prometheus"`
		Body       string       `json:"body,omitempty" jsonschema_description:"Regexp the HTTP body must match"`
		Query      string       `json:"query,omitempty" jsonschema_description:"Prometheus query"`
		Phases     []string     `json:"phases,omitempty" jsonschema:"enum=baseline,enum=inject,enum=recovery"`
		Name       string       `json:"name,omitempty" jsonschema_description:"A probe's name, for probe_success of NAME and probe_latency STAT of NAME"`
		Alert      string       `json:"alert,omitempty" jsonschema_description:"Holds while this Prometheus alert is not firing"`
		Prometheus string       `json:"prometheus,omitempty" jsonschema_description:"With alert: the Prometheus server's URL"`
		Token      string       `json:"token,omitempty" jsonschema_description:"A bearer token for Prometheus (better: ${VAR})"`
	}
	stopObj struct {
		Alert      string `json:"alert,omitempty" jsonschema_description:"Stop while this alert is firing"`
		Prometheus string `json:"prometheus" jsonschema_description:"The Prometheus server's URL"`
		Query      string `json:"query,omitempty" jsonschema_description:"PromQL; the run stops while a series meets when"`
		When       string `json:"when,omitempty" jsonschema_description:"OP VALUE [for DURATION], e.g. > 5 for 10s"`
		Token      string `json:"token,omitempty" jsonschema_description:"A bearer token (better: ${VAR})"`
	}
	probeObj struct {
		Command    []string `json:"command,omitempty"`
		Prometheus string   `json:"prometheus,omitempty"`
	}
	faultDoc struct {
		Name         string          `json:"name"`
		Target       string          `json:"target,omitempty"`
		Start        durationDoc     `json:"start,omitempty"`
		Duration     durationDoc     `json:"duration,omitempty"`
		Select       selectDoc       `json:"select,omitempty"`
		Direction    string          `json:"direction,omitempty" jsonschema:"enum=upstream,enum=downstream,enum=both"`
		Toxicity     float64         `json:"toxicity,omitempty" jsonschema:"minimum=0,maximum=1"`
		Irreversible bool            `json:"irreversible,omitempty"`
		AllowHost    bool            `json:"allow_host_network,omitempty" jsonschema_description:"let a network fault act in the host's own network namespace"`
		Lease        durationDoc     `json:"lease,omitempty" jsonschema_description:"a fault inside a pod: its agent takes it back when the runner has not renewed it for this long (default 15s)"`
		Partition    *partitionDoc   `json:"partition,omitempty"`
		PacketLoss   *packetLossDoc  `json:"packet_loss,omitempty"`
		Latency      *latencyDoc     `json:"latency,omitempty"`
		Bandwidth    *rateDoc        `json:"bandwidth,omitempty"`
		SlowClose    *delayDoc       `json:"slow_close,omitempty"`
		Timeout      *timeoutDoc     `json:"timeout,omitempty"`
		ResetPeer    *timeoutDoc     `json:"reset_peer,omitempty"`
		Slicer       *slicerDoc      `json:"slicer,omitempty"`
		LimitData    *bytesDoc       `json:"limit_data,omitempty"`
		HTTPStatus   *httpStatusDoc  `json:"http_status,omitempty"`
		HTTPLatency  *httpLatencyDoc `json:"http_latency,omitempty"`
		HTTPBody     *httpBodyDoc    `json:"http_body,omitempty"`
		HTTPHeader   *httpHeaderDoc  `json:"http_header,omitempty"`
		DNS          *dnsFaultDoc    `json:"dns,omitempty"`
		PodKill      *podKillDoc     `json:"pod_kill,omitempty"`
		Scale        *scaleDoc       `json:"scale,omitempty"`
		Cordon       *struct{}       `json:"cordon,omitempty"`
		CPU          *cpuDoc         `json:"cpu,omitempty"`
		Memory       *memoryDoc      `json:"memory,omitempty"`
		DiskFill     *diskFillDoc    `json:"disk_fill,omitempty"`
		Connections  *connectionsDoc `json:"connections,omitempty"`
		Down         *struct{}       `json:"down,omitempty"`
		Kill         *killDoc        `json:"kill,omitempty"`
		Stop         *struct{}       `json:"stop,omitempty"`
		Exec         *execDoc        `json:"exec,omitempty"`
	}
	latencyDoc struct {
		Delay  durationDoc `json:"delay"`
		Jitter durationDoc `json:"jitter,omitempty"`
	}
	rateDoc struct {
		Rate int64 `json:"rate" jsonschema:"minimum=0" jsonschema_description:"KB/s"`
	}
	delayDoc struct {
		Delay durationDoc `json:"delay,omitempty"`
	}
	timeoutDoc struct {
		Timeout durationDoc `json:"timeout,omitempty"`
	}
	slicerDoc struct {
		AverageSize   int         `json:"average_size,omitempty" jsonschema:"minimum=1"`
		SizeVariation int         `json:"size_variation,omitempty" jsonschema:"minimum=0"`
		Delay         durationDoc `json:"delay,omitempty"`
	}
	bytesDoc struct {
		Bytes int64 `json:"bytes,omitempty" jsonschema:"minimum=0"`
	}
	httpStatusDoc struct {
		Status     int    `json:"status" jsonschema:"minimum=100,maximum=599"`
		Body       string `json:"body,omitempty"`
		RetryAfter int    `json:"retry_after,omitempty" jsonschema:"minimum=0" jsonschema_description:"seconds"`
		First      int    `json:"first,omitempty" jsonschema:"minimum=0"`
		Every      int    `json:"every,omitempty" jsonschema:"minimum=0"`
		Method     string `json:"method,omitempty"`
		Path       string `json:"path,omitempty"`
	}
	httpLatencyDoc struct {
		Delay  durationDoc `json:"delay"`
		Jitter durationDoc `json:"jitter,omitempty"`
		Phase  string      `json:"phase,omitempty" jsonschema:"enum=request,enum=response"`
		Method string      `json:"method,omitempty"`
		Path   string      `json:"path,omitempty"`
	}
	httpBodyDoc struct {
		Null     []string          `json:"null,omitempty"`
		Drop     []string          `json:"drop,omitempty"`
		Rename   map[string]string `json:"rename,omitempty"`
		Retype   []string          `json:"retype,omitempty"`
		Garble   int               `json:"garble,omitempty" jsonschema:"minimum=0"`
		Truncate int               `json:"truncate,omitempty" jsonschema:"minimum=0"`
		Method   string            `json:"method,omitempty"`
		Path     string            `json:"path,omitempty"`
	}
	httpHeaderDoc struct {
		Drop   []string          `json:"drop,omitempty"`
		Set    map[string]string `json:"set,omitempty"`
		Add    map[string]string `json:"add,omitempty"`
		Phase  string            `json:"phase,omitempty" jsonschema:"enum=request,enum=response"`
		Method string            `json:"method,omitempty"`
		Path   string            `json:"path,omitempty"`
	}
	killDoc struct {
		Signal string `json:"signal,omitempty" jsonschema:"pattern=^(SIG|sig)?(KILL|TERM|INT|QUIT|HUP|ABRT|USR1|USR2|kill|term|int|quit|hup|abrt|usr1|usr2)$" jsonschema_description:"SIGKILL (default), SIGTERM, ...; TERM or term too"`
	}
	execDoc struct {
		Inject []string `json:"inject"`
		Revert []string `json:"revert"`
	}
	selectObj struct {
		Tags    map[string]string `json:"tags,omitempty"`
		Count   int               `json:"count,omitempty" jsonschema:"minimum=1"`
		Percent int               `json:"percent,omitempty" jsonschema:"minimum=1,maximum=100"`
	}

	durationDoc      string
	conditionDoc     string
	stopConditionDoc string
	tagDoc           struct{}
	requestDoc       struct{}
	checkDoc         struct{}
	probeDoc         struct{}
	selectDoc        struct{}
)

func (durationDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`,
		Description: "A Go duration: 500ms, 2s, 1m30s"}
}

// trafficCondition is the grammar of a condition on the traffic.
const trafficCondition = `(error_rate|throughput|probe_success|(latency|probe_latency) (p50|p90|p95|p99|p99\.9|mean|max))( of \S+)? (<|<=|>|>=) \S+( baseline)?( for \S+)?`

func (conditionDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string",
		Pattern:     `^(` + trafficCondition + `|ready_pods\(.+\) (<|<=|>|>=) [0-9.]+%)$`,
		Description: "METRIC [of REQUEST] OP VALUE [for DURATION], e.g. latency p99 < 600ms; or ready_pods([NAMESPACE/]SELECTOR) OP PERCENT"}
}

// A stop condition is on the traffic or the probes, or an alert or a query.
func (stopConditionDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Ref: "#/$defs/stopObj"}, {Type: "string", Pattern: `^` + trafficCondition + `$`,
		Description: "METRIC [of REQUEST] OP VALUE [for DURATION], e.g. error_rate > 90% for 5s"}}}
}

func (tagDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string"}, {Type: "array", Items: &jsonschema.Schema{Type: "string"}}}}
}

func (requestDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "string", Description: "METHOD URL, or a URL for GET"},
		{Ref: "#/$defs/requestObj"},
	}}
}

func (checkDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Ref: "#/$defs/conditionDoc"}, {Ref: "#/$defs/checkObj"}}}
}

func (probeDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "string", Description: "METHOD URL, or tcp HOST:PORT"},
		{Ref: "#/$defs/probeObj"},
	}}
}

func (selectDoc) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "string", Pattern: `^(ALL|COUNT\([0-9]+\)|PERCENT\([0-9]+\))$`},
		{Ref: "#/$defs/selectObj"},
	}}
}

// Schema returns the JSON Schema of experiment files.
func Schema() ([]byte, error) { return SchemaWith(nil) }

// SchemaWith is Schema with more action keys a fault may give: each key's
// value has the shape of its doc (a Go struct value with json tags), as a
// fault.Registry's families from outside declare them.
func SchemaWith(actions map[string]any) ([]byte, error) {
	r := &jsonschema.Reflector{RequiredFromJSONSchemaTags: false}
	s := r.Reflect(&fileDoc{})
	if fd, ok := s.Definitions["faultDoc"]; ok && fd.Properties != nil {
		for _, key := range slices.Sorted(maps.Keys(actions)) {
			ds := r.Reflect(actions[key])
			for name, def := range ds.Definitions {
				if _, ok := s.Definitions[name]; !ok {
					s.Definitions[name] = def
				}
			}
			ds.Definitions, ds.Version = nil, ""
			fd.Properties.Set(key, ds)
		}
	}
	s.ID = "https://faultline.dev/schemas/experiment.json"
	s.Title = "faultline experiment"
	// The union types name these by reference: reflect them too and take
	// every definition they bring.
	for _, v := range []any{requestObj{}, checkObj{}, probeObj{}, selectObj{}, stopObj{}} {
		for name, def := range r.Reflect(v).Definitions {
			if _, ok := s.Definitions[name]; !ok {
				s.Definitions[name] = def
			}
		}
	}
	s.Definitions["conditionDoc"] = conditionDoc("").JSONSchema()
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	allowVars(doc)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err = enc.Encode(doc)
	return buf.Bytes(), err
}

// varPattern is a whole value given by a variable: ${NAME} or
// ${NAME:-DEFAULT}, filled in before the file is read.
const varPattern = `^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$`

// allowVars lets every number and boolean of the schema be a ${VAR} too,
// as the parser does.
func allowVars(v any) {
	switch v := v.(type) {
	case map[string]any:
		if t, ok := v["type"].(string); ok && (t == "integer" || t == "number" || t == "boolean") {
			typed := map[string]any{}
			for _, k := range []string{"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"} {
				if x, ok := v[k]; ok {
					typed[k] = x
					delete(v, k)
				}
			}
			v["anyOf"] = []any{typed, map[string]any{"type": "string", "pattern": varPattern}}
			return
		}
		for _, x := range v {
			allowVars(x)
		}
	case []any:
		for _, x := range v {
			allowVars(x)
		}
	}
}
