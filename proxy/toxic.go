package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Stream is the direction of the bytes a toxic acts on.
type Stream int

const (
	// Downstream is server → client, the zero value and the default.
	Downstream Stream = iota
	// Upstream is client → server.
	Upstream
)

func (s Stream) String() string {
	if s == Upstream {
		return "upstream"
	}
	return "downstream"
}

// ParseStream reads "upstream" or "downstream", in any case.
func ParseStream(s string) (Stream, error) {
	switch strings.ToLower(s) {
	case "upstream":
		return Upstream, nil
	case "downstream":
		return Downstream, nil
	}
	return 0, invalidf("stream was invalid, can be either upstream or downstream")
}

// Effect is what a toxic does to the bytes of its stream: one of Latency,
// Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData or Noop.
type Effect interface {
	// Type is the toxic's type name in Toxiproxy's API, e.g. "latency".
	Type() string
	validate() error
	// wire returns the attributes as the API shows them.
	wire() any
}

// Latency delays every chunk by Delay ± Jitter (uniform). Chained latency
// toxics add up.
type Latency struct {
	Delay  time.Duration
	Jitter time.Duration
}

// Bandwidth limits the stream to Rate kilobytes (1000 bytes) per second.
// A Rate of 0 lets nothing through until the toxic is removed.
type Bandwidth struct {
	Rate int64
}

// SlowClose delays passing on the end of the stream (the FIN) by Delay.
type SlowClose struct {
	Delay time.Duration
}

// Timeout swallows every byte of the stream. With a non-zero Timeout it
// closes the connection once Timeout has passed without data arriving;
// with zero it holds the connection until the toxic is removed, and
// removing it closes the connections it held.
type Timeout struct {
	Timeout time.Duration
}

// ResetPeer closes the connection with a TCP RST Timeout after the first
// data (or end of stream) arrives; that data is dropped.
type ResetPeer struct {
	Timeout time.Duration
}

// Slicer cuts the stream into pieces of about AverageSize ± SizeVariation
// bytes and waits Delay between pieces.
type Slicer struct {
	AverageSize   int
	SizeVariation int
	Delay         time.Duration
}

// LimitData closes the connection once Bytes bytes have passed in the
// stream since the toxic was added to it.
type LimitData struct {
	Bytes int64
}

// Noop passes everything through unchanged.
type Noop struct{}

func (Latency) Type() string   { return "latency" }
func (Bandwidth) Type() string { return "bandwidth" }
func (SlowClose) Type() string { return "slow_close" }
func (Timeout) Type() string   { return "timeout" }
func (ResetPeer) Type() string { return "reset_peer" }
func (Slicer) Type() string    { return "slicer" }
func (LimitData) Type() string { return "limit_data" }
func (Noop) Type() string      { return "noop" }

func nonNegative(field string, v int64) error {
	if v < 0 {
		return invalidf("%s must be >= 0, got %d", field, v)
	}
	return nil
}

func nonNegativeDuration(field string, d time.Duration) error {
	if d < 0 {
		return invalidf("%s must be >= 0, got %s", field, d)
	}
	return nil
}

func (e Latency) validate() error {
	return errors.Join(nonNegativeDuration("latency", e.Delay), nonNegativeDuration("jitter", e.Jitter))
}
func (e Bandwidth) validate() error { return nonNegative("rate", e.Rate) }
func (e SlowClose) validate() error { return nonNegativeDuration("delay", e.Delay) }
func (e Timeout) validate() error   { return nonNegativeDuration("timeout", e.Timeout) }
func (e ResetPeer) validate() error { return nonNegativeDuration("timeout", e.Timeout) }
func (e LimitData) validate() error { return nonNegative("bytes", e.Bytes) }
func (Noop) validate() error        { return nil }
func (e Slicer) validate() error {
	switch {
	case e.AverageSize <= 0:
		return invalidf("average_size must be > 0, got %d", e.AverageSize)
	case e.SizeVariation < 0:
		return invalidf("size_variation must be >= 0, got %d", e.SizeVariation)
	case e.AverageSize < e.SizeVariation:
		return invalidf("size_variation (%d) must not exceed average_size (%d)", e.SizeVariation, e.AverageSize)
	}
	return nonNegativeDuration("delay", e.Delay)
}

// Wire forms of the attributes: Toxiproxy's names and units (milliseconds,
// except slicer's delay in microseconds).
type (
	latencyWire   struct{ Latency, Jitter int64 }
	bandwidthWire struct {
		Rate int64 `json:"rate"`
	}
	delayWire struct {
		Delay int64 `json:"delay"`
	}
	timeoutWire struct {
		Timeout int64 `json:"timeout"`
	}
	slicerWire struct {
		AverageSize   int `json:"average_size"`
		SizeVariation int `json:"size_variation"`
		Delay         int `json:"delay"`
	}
	limitDataWire struct {
		Bytes int64 `json:"bytes"`
	}
	noopWire struct{}
)

// MarshalJSON keeps Toxiproxy's attribute order: latency, then jitter.
func (w latencyWire) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"latency":%d,"jitter":%d}`, w.Latency, w.Jitter), nil
}

func (w *latencyWire) UnmarshalJSON(b []byte) error {
	v := struct {
		Latency *int64 `json:"latency"`
		Jitter  *int64 `json:"jitter"`
	}{&w.Latency, &w.Jitter}
	return json.Unmarshal(b, &v)
}

func (e Latency) wire() any {
	return &latencyWire{e.Delay.Milliseconds(), e.Jitter.Milliseconds()}
}
func (e Bandwidth) wire() any { return &bandwidthWire{e.Rate} }
func (e SlowClose) wire() any { return &delayWire{e.Delay.Milliseconds()} }
func (e Timeout) wire() any   { return &timeoutWire{e.Timeout.Milliseconds()} }
func (e ResetPeer) wire() any { return &timeoutWire{e.Timeout.Milliseconds()} }
func (e Slicer) wire() any {
	return &slicerWire{e.AverageSize, e.SizeVariation, int(e.Delay.Microseconds())}
}
func (e LimitData) wire() any { return &limitDataWire{e.Bytes} }
func (Noop) wire() any        { return &noopWire{} }

// Attribute is one attribute of a toxic type as the API takes it: an
// integer in Unit, or text ("text"), a list ("list": JSON strings, or one
// string with commas) or a map ("map": a JSON object, or "K=V,K=V").
type Attribute struct {
	Name, Unit string
}

// ToxicType is one type of toxic: its name in the API, its attributes,
// what it does (the help's line), and its effect with every attribute at
// its default.
type ToxicType struct {
	Name       string
	Attributes []Attribute
	Help       string
	// HTTP types act on whole HTTP/1.1 requests and responses.
	HTTP bool
	zero Effect
}

// toxicTypes is every type the proxy knows, in Toxiproxy's names and
// order, then faultline's HTTP ones: the one table that ToxicTypes,
// ToxicAttributes, the API's constructor and 'faultline toxic --help'
// come from.
var toxicTypes = []ToxicType{
	{Name: "latency", Attributes: []Attribute{{"latency", "ms"}, {"jitter", "ms"}}, zero: Latency{},
		Help: "delay every chunk by latency ± jitter"},
	{Name: "bandwidth", Attributes: []Attribute{{"rate", "KB/s"}}, zero: Bandwidth{},
		Help: "limit the rate; 0 lets nothing through"},
	{Name: "slow_close", Attributes: []Attribute{{"delay", "ms"}}, zero: SlowClose{},
		Help: "delay passing on the end of the stream (FIN)"},
	{Name: "timeout", Attributes: []Attribute{{"timeout", "ms"}}, zero: Timeout{},
		Help: "swallow the data; close the connection once timeout ms pass without data (0: hold it until the toxic is removed, which then closes it)"},
	{Name: "reset_peer", Attributes: []Attribute{{"timeout", "ms"}}, zero: ResetPeer{},
		Help: "close with a TCP RST timeout ms after data arrives"},
	{Name: "slicer", Attributes: []Attribute{{"average_size", "bytes"}, {"size_variation", "bytes"}, {"delay", "µs"}}, zero: Slicer{AverageSize: 10},
		Help: "cut data into small pieces, delay apart"},
	{Name: "limit_data", Attributes: []Attribute{{"bytes", "bytes"}}, zero: LimitData{},
		Help: "close the connection after this many bytes"},
	{Name: "noop", zero: Noop{}, Help: "do nothing (useful in tests)"},
	{Name: "http_status", HTTP: true, zero: HTTPStatus{Status: 503},
		Attributes: []Attribute{{"status", "code"}, {"body", "text"}, {"retry_after", "s"}, {"first", "requests"}, {"every", "requests"}, {"method", "text"}, {"path", "text"}},
		Help:       "answer status instead of forwarding: every matched request, the first N, or every Nth"},
	{Name: "http_latency", HTTP: true, zero: HTTPLatency{},
		Attributes: []Attribute{{"latency", "ms"}, {"jitter", "ms"}, {"phase", "text"}, {"method", "text"}, {"path", "text"}},
		Help:       "delay whole requests or responses (phase=request|response)"},
	{Name: "http_body", HTTP: true, zero: HTTPBody{Truncate: -1},
		Attributes: []Attribute{{"null", "list"}, {"drop", "list"}, {"rename", "map"}, {"retype", "list"}, {"garble", "bytes"}, {"truncate", "bytes"}, {"method", "text"}, {"path", "text"}},
		Help:       "corrupt response bodies at JSON paths ($.payment.status, $.items[*].price); Content-Length stays right"},
	{Name: "http_header", HTTP: true, zero: HTTPHeader{},
		Attributes: []Attribute{{"drop", "list"}, {"set", "map"}, {"add", "map"}, {"phase", "text"}, {"method", "text"}, {"path", "text"}},
		Help:       "drop, set or add headers of requests or responses (phase=request|response)"},
}

// ToxicTypes lists the types the proxy knows, in Toxiproxy's names.
var ToxicTypes = func() []string {
	out := make([]string, len(toxicTypes))
	for i, t := range toxicTypes {
		out[i] = t.Name
	}
	return out
}()

// ToxicAttributes lists the attributes of each type in ToxicTypes.
var ToxicAttributes = func() map[string][]Attribute {
	out := map[string][]Attribute{}
	for _, t := range toxicTypes {
		out[t.Name] = t.Attributes
	}
	return out
}()

// newEffect returns the zero effect of a type, or nil if the type is unknown.
func newEffect(typ string) Effect {
	for _, t := range toxicTypes {
		if t.Name == typ {
			return t.zero
		}
	}
	return nil
}

// ToxicHelp describes every type and its attributes, for a command's help:
// a line (or a few) a type, the byte toxics first, then the HTTP ones.
func ToxicHelp() string {
	var b strings.Builder
	for _, t := range toxicTypes {
		// Attributes with the same unit share it: "latency, jitter (ms)".
		var attrs, group []string
		unit := ""
		flush := func() {
			if len(group) == 0 {
				return
			}
			text := strings.Join(group, ", ")
			if unit != group[len(group)-1] {
				text += " (" + unit + ")"
			}
			attrs, group = append(attrs, text), nil
		}
		for _, a := range t.Attributes {
			if a.Name == "method" || a.Name == "path" || a.Name == "phase" {
				continue // every HTTP toxic's; said once, below
			}
			if a.Unit != unit {
				flush()
				unit = a.Unit
			}
			group = append(group, a.Name)
		}
		flush()
		line := fmt.Sprintf("  %-12s %s", t.Name, strings.Join(attrs, ", "))
		help := wrap(t.Help, 38)
		if len(line) > 39 {
			b.WriteString(line + "\n")
			line = ""
		}
		for i, h := range help {
			if i > 0 || line == "" {
				line = strings.Repeat(" ", 40)
			} else {
				line = fmt.Sprintf("%-40s", line)
			}
			b.WriteString(line + h + "\n")
		}
	}
	return b.String()
}

// wrap cuts text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var out []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			out = append(out, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(out, line)
}

// applyAttributes decodes JSON attributes over e's current values (keys left
// out keep them; unknown keys are ignored) and returns the result.
func applyAttributes(e Effect, attrs json.RawMessage) (Effect, error) {
	w := e.wire()
	if len(attrs) > 0 {
		if err := json.Unmarshal(attrs, w); err != nil {
			return nil, invalidf("bad request body: %s", jsonErrorText(err))
		}
	}
	out, err := fromWire(e.Type(), w)
	if err != nil {
		return nil, err
	}
	if err := out.validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// fromWire turns decoded attributes into the effect of type typ.
func fromWire(typ string, w any) (Effect, error) {
	var errs []error
	ms := func(field string, v int64) time.Duration {
		d, err := wireDuration(field, v, time.Millisecond, "ms")
		errs = append(errs, err)
		return d
	}
	var out Effect
	switch w := w.(type) {
	case *latencyWire:
		out = Latency{Delay: ms("latency", w.Latency), Jitter: ms("jitter", w.Jitter)}
	case *bandwidthWire:
		out = Bandwidth{Rate: w.Rate}
	case *delayWire:
		out = SlowClose{Delay: ms("delay", w.Delay)}
	case *timeoutWire:
		if typ == "reset_peer" {
			out = ResetPeer{Timeout: ms("timeout", w.Timeout)}
		} else {
			out = Timeout{Timeout: ms("timeout", w.Timeout)}
		}
	case *slicerWire:
		delay, err := wireDuration("delay", int64(w.Delay), time.Microsecond, "µs")
		errs = append(errs, err)
		out = Slicer{AverageSize: w.AverageSize, SizeVariation: w.SizeVariation, Delay: delay}
	case *limitDataWire:
		out = LimitData{Bytes: w.Bytes}
	case *httpLatencyWire:
		out = HTTPLatency{HTTPMatch{w.Method, w.Path}, ms("latency", w.Latency), ms("jitter", w.Jitter), w.Phase}
	default:
		if e, ok := fromHTTPWire(w); ok {
			return e, nil
		}
		out = Noop{}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// wireDuration converts an attribute given in unit to a Duration. A time
// too long for a Duration (about 292 years) is refused rather than
// wrapped around; a negative one is left for validate to refuse.
func wireDuration(field string, v int64, unit time.Duration, unitName string) (time.Duration, error) {
	limit := int64(math.MaxInt64 / unit)
	switch {
	case v > limit:
		return 0, invalidf("%s must be at most %d %s (292 years), got %d", field, limit, unitName, v)
	case v < -limit:
		v = -limit
	}
	return time.Duration(v) * unit, nil
}

func jsonErrorText(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		what := ute.Type.String()
		switch ute.Type.Kind() {
		case reflect.Int, reflect.Int64:
			what = "an integer"
		case reflect.Float32, reflect.Float64:
			what = "a number"
		case reflect.String:
			what = "a string"
		case reflect.Bool:
			what = "true or false"
		}
		return fmt.Sprintf("json: cannot unmarshal %s into %q, which takes %s", ute.Value, ute.Field, what)
	}
	return err.Error()
}

// Toxic is a named effect on one stream of a proxy.
type Toxic struct {
	// Name is unique within a proxy across both streams; empty means
	// "TYPE_STREAM", e.g. "latency_downstream".
	Name string
	// Stream is the direction acted on; the zero value is Downstream.
	Stream Stream
	// Toxicity is the probability, in [0, 1], that the toxic applies to a
	// given connection; it is drawn per connection. Nil means 1.
	Toxicity *float32
	// Effect is what the toxic does, e.g. Latency{Delay: 100 * time.Millisecond}.
	Effect Effect

	// streamName is the stream as an API client spelled it, echoed back.
	streamName string
}

func (t Toxic) toxicity() float32 {
	if t.Toxicity == nil {
		return 1
	}
	return *t.Toxicity
}

func (t Toxic) streamString() string {
	if t.streamName != "" {
		return t.streamName
	}
	return t.Stream.String()
}

// normalize fills defaults and validates.
func (t Toxic) normalize() (Toxic, error) {
	if t.Effect == nil {
		return t, invalidf("invalid toxic type")
	}
	if t.Name == "" {
		t.Name = t.Effect.Type() + "_" + t.streamString()
	}
	if x := t.toxicity(); !(x >= 0 && x <= 1) {
		return t, invalidf("toxicity must be between 0 and 1, got %v", x)
	}
	if err := t.Effect.validate(); err != nil {
		return t, err
	}
	return t, nil
}

// draw decides whether the toxic applies to one connection.
func (t Toxic) draw(r *lockedRand) bool {
	x := t.toxicity()
	if x >= 1 {
		return true
	}
	if x <= 0 {
		return false
	}
	return r.Float32() < x
}

// lockedRand is a seeded source shared by the connections of a server.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed int64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))}
}

func (r *lockedRand) Float32() float32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Float32()
}

// child returns a source of its own seeded from r, for a stretch of draws
// that should not take r's lock each time.
func (r *lockedRand) child() *rand.Rand {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rand.New(rand.NewPCG(r.r.Uint64(), r.r.Uint64()))
}

// Uint64N returns a number in [0, n), or 0 when n is 0.
func (r *lockedRand) Uint64N(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Uint64N(n)
}

// Int64N returns a number in [0, n), or 0 when n <= 0.
func (r *lockedRand) Int64N(n int64) int64 {
	if n <= 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Int64N(n)
}

// Validate reports whether an effect's values can be used, as AddToxic
// would.
func Validate(e Effect) error {
	if e == nil {
		return invalidf("no effect")
	}
	return e.validate()
}

// Attributes returns an effect's attributes as the API takes and shows
// them, for a client that adds it to a remote proxy.
func Attributes(e Effect) map[string]any {
	out := map[string]any{}
	if b, err := json.Marshal(e.wire()); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// DecodeEffect is the effect of a toxic type with attributes as the API
// takes them (a ToxicInfo's): what another process rebuilds a toxic from.
func DecodeEffect(typ string, attrs map[string]any) (Effect, error) {
	e := newEffect(typ)
	if e == nil {
		return nil, invalidf("invalid toxic type %q", typ)
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		return nil, invalidf("toxic %s: attributes: %v", typ, err)
	}
	return applyAttributes(e, b)
}
