package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/proxy"
)

// apiFlags are the flags every API client command takes.
type apiFlags struct {
	api, token, tokenFile string
	json                  bool
	cmd                   *cobra.Command
}

func (a *apiFlags) register(cmd *cobra.Command) {
	a.cmd = cmd
	f := cmd.PersistentFlags()
	f.StringVar(&a.api, "api", envOr("http://127.0.0.1:8474", "FAULTLINE_API", "TOXIPROXY_URL"),
		"`URL` of the proxy API: faultline serve or any Toxiproxy ($FAULTLINE_API, $TOXIPROXY_URL)")
	f.StringVar(&a.token, "token", "", "bearer `token` for the API; shows in ps: prefer --token-file or $FAULTLINE_TOKEN")
	f.StringVar(&a.tokenFile, "token-file", "", "`file` holding the bearer token for the API (default $FAULTLINE_TOKEN)")
	f.BoolVar(&a.json, "json", false, "print the API's JSON instead of a table")
}

// client returns a client for --api, or a usage error for a URL that is
// not http(s).
func (a *apiFlags) client() (*proxy.Client, error) {
	return a.newClient(a.cmd)
}

// newClient is client, warning on warn's stderr (nil: not at all).
func (a *apiFlags) newClient(warn *cobra.Command) (*proxy.Client, error) {
	token, err := resolveToken(warn, a.token, a.tokenFile)
	if err != nil {
		return nil, err
	}
	if scheme, _, ok := strings.Cut(a.api, "://"); ok && scheme != "http" && scheme != "https" {
		return nil, usagef("--api %q: want an http:// or https:// URL", a.api)
	}
	return proxy.NewClient(a.api, token), nil
}

// completionTimeout bounds what shell completion waits for the API.
const completionTimeout = time.Second

// ask calls the API for shell completion: quickly, and silently (no
// warning, no error: a completion offers nothing instead).
func (a *apiFlags) ask(c *cobra.Command, call func(context.Context, *proxy.Client) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	cl, err := a.newClient(nil)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	names, err := call(ctx, cl)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	sort.Strings(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeProxy completes a command's first argument, a proxy, with the
// names of the API's proxies.
func (a *apiFlags) completeProxy(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.ask(c, func(ctx context.Context, cl *proxy.Client) ([]string, error) {
		ps, err := cl.Proxies(ctx)
		return slices.Collect(maps.Keys(ps)), err
	})
}

// completeToxic completes a toxic's name with those of the proxy given
// as the first argument.
func (a *apiFlags) completeToxic(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.ask(c, func(ctx context.Context, cl *proxy.Client) ([]string, error) {
		p, err := cl.Proxy(ctx, args[0])
		var names []string
		for _, t := range p.Toxics {
			names = append(names, t.Name)
		}
		return names, err
	})
}

// completeTypes completes -t with the toxic types.
func completeTypes(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return proxy.ToxicTypes, cobra.ShellCompDirectiveNoFileComp
}

// hintNoServer makes the subcommands of cmd say what to do when nothing
// listens at --api, the first thing a new user meets.
func hintNoServer(cmd *cobra.Command, a *apiFlags) {
	for _, sub := range cmd.Commands() {
		run := sub.RunE
		sub.RunE = func(c *cobra.Command, args []string) error {
			err := run(c, args)
			if errors.Is(err, syscall.ECONNREFUSED) {
				return failure(fmt.Errorf("%w\nno proxy server answers at %s: start one with 'faultline serve', or point --api (or $FAULTLINE_API) at yours", err, a.api))
			}
			return err
		}
	}
}

// checkAddr refuses an address that is not HOST:PORT before the server does.
func checkAddr(flag, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return usagef("%s %q: want HOST:PORT, e.g. 127.0.0.1:26379", flag, addr)
	}
	return nil
}

// inProxy names the proxy in an API error, whose text is Toxiproxy's.
func inProxy(name string, err error) error {
	return failure(withHaltHint(fmt.Errorf("proxy %s: %w", name, err)))
}

// refusedAsHalted reports whether err is faultline serve's 409 while its
// kill switch is engaged.
func refusedAsHalted(err error) bool {
	var ae *proxy.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict && strings.HasPrefix(ae.Message, "faultline is halted")
}

// withHaltHint adds what to do to a refusal while halted.
func withHaltHint(err error) error {
	if !refusedAsHalted(err) {
		return err
	}
	return fmt.Errorf("%w\nthe kill switch is engaged where the server runs: 'faultline status' there shows it, 'faultline resume' releases it", err)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func newProxyCmd() *cobra.Command {
	var a apiFlags
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "List, create, inspect, toggle and delete proxies on a proxy server",
		Long: `Manage the proxies of a proxy server: 'faultline serve', or any Toxiproxy 2.x.
The flags follow toxiproxy-cli's.`,
		Example: `  faultline proxy create redis -l 127.0.0.1:26379 -u 127.0.0.1:6379
  faultline proxy list
  faultline proxy inspect redis
  faultline proxy toggle redis        # down: listener closed, connections dropped
  faultline proxy delete redis
  faultline proxy list --api http://toxiproxy.internal:8474`,
	}
	group(cmd)
	a.register(cmd)

	cmd.AddCommand(newProxyListCmd(&a), newProxyCreateCmd(&a), newProxyInspectCmd(&a), newProxyToggleCmd(&a), newProxyDeleteCmd(&a))
	hintNoServer(cmd, &a)
	return cmd
}

// newProxyListCmd is faultline proxy list.
func newProxyListCmd(a *apiFlags) *cobra.Command {
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List proxies", Args: noArgs,
		Example: "  faultline proxy list\n  faultline proxy list --json\n  faultline proxy list --api http://10.0.0.5:8474 --token \"$TOKEN\"",
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ps, err := cl.Proxies(c.Context())
			if err != nil {
				return failure(err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), ps)
			}
			names := make([]string, 0, len(ps))
			for n := range ps {
				names = append(names, n)
			}
			sort.Strings(names)
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tLISTEN\tUPSTREAM\tENABLED\tTOXICS")
			for _, n := range names {
				p := ps[n]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\n", p.Name, p.Listen, p.Upstream, p.Enabled, len(p.Toxics))
			}
			if len(names) == 0 {
				fmt.Fprintln(tw, "(no proxies: create one with 'faultline proxy create NAME -l LISTEN -u UPSTREAM')")
			}
			return tw.Flush()
		},
	}

	return list
}

// newProxyCreateCmd is faultline proxy create.
func newProxyCreateCmd(a *apiFlags) *cobra.Command {
	var listen, upstream string
	create := &cobra.Command{
		Use: "create NAME -l LISTEN -u UPSTREAM", Short: "Create a proxy", Args: exactArgs("NAME"),
		Example: "  faultline proxy create db -l 127.0.0.1:25432 -u 127.0.0.1:5432",
		RunE: func(c *cobra.Command, args []string) error {
			if upstream == "" {
				return usagef("proxy create: --upstream (-u) is required")
			}
			if err := errors.Join(checkAddr("--listen", listen), checkAddr("--upstream", upstream)); err != nil {
				return &exitError{ExitUsage, err}
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.CreateProxy(c.Context(), args[0], listen, upstream)
			if err != nil {
				return inProxy(args[0], err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), p)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "created proxy %s: %s -> %s\n", p.Name, p.Listen, p.Upstream)
			return err
		},
	}
	create.Flags().StringVarP(&listen, "listen", "l", "127.0.0.1:0", "`HOST:PORT` to listen on (port 0: a free one)")
	create.Flags().StringVarP(&upstream, "upstream", "u", "", "`HOST:PORT` to forward to")

	return create
}

// newProxyInspectCmd is faultline proxy inspect.
func newProxyInspectCmd(a *apiFlags) *cobra.Command {
	inspect := &cobra.Command{
		Use: "inspect NAME", Aliases: []string{"i"}, Short: "Show a proxy and its toxics", Args: exactArgs("NAME"),
		ValidArgsFunction: a.completeProxy,
		Example:           "  faultline proxy inspect redis\n  faultline proxy inspect redis --json",
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.Proxy(c.Context(), args[0])
			if err != nil {
				return inProxy(args[0], err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), p)
			}
			return printProxy(c.OutOrStdout(), p)
		},
	}

	return inspect
}

// newProxyToggleCmd is faultline proxy toggle.
func newProxyToggleCmd(a *apiFlags) *cobra.Command {
	toggle := &cobra.Command{
		Use: "toggle NAME", Short: "Enable a disabled proxy, or disable (take down) an enabled one", Args: exactArgs("NAME"),
		ValidArgsFunction: a.completeProxy,
		Example:           "  faultline proxy toggle redis   # the service is down: new connections refused, live ones dropped\n  faultline proxy toggle redis   # and back up",
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.Proxy(c.Context(), args[0])
			if err != nil {
				return inProxy(args[0], err)
			}
			if p, err = cl.SetEnabled(c.Context(), args[0], !p.Enabled); err != nil {
				return inProxy(args[0], err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), p)
			}
			state := "disabled (down: listener closed, connections dropped)"
			if p.Enabled {
				state = "enabled"
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "proxy %s is now %s\n", p.Name, state)
			return err
		},
	}

	return toggle
}

// newProxyDeleteCmd is faultline proxy delete.
func newProxyDeleteCmd(a *apiFlags) *cobra.Command {
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a proxy, closing its connections", Args: exactArgs("NAME"),
		ValidArgsFunction: a.completeProxy,
		Example:           "  faultline proxy delete redis",
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteProxy(c.Context(), args[0]); err != nil {
				return inProxy(args[0], err)
			}
			if a.json {
				return nil
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "deleted proxy %s\n", args[0])
			return err
		},
	}
	return del
}

func printProxy(w io.Writer, p proxy.ProxyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\nListen:\t%s\nUpstream:\t%s\nEnabled:\t%v\n", p.Name, p.Listen, p.Upstream, p.Enabled)
	if len(p.Toxics) == 0 {
		fmt.Fprintln(tw, "Toxics:\tnone")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "Toxics:")
	fmt.Fprintln(tw, "  NAME\tTYPE\tSTREAM\tTOXICITY\tATTRIBUTES")
	for _, t := range p.Toxics {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%g\t%s\n", t.Name, t.Type, t.Stream, t.Toxicity, formatAttrs(t.Attributes))
	}
	return tw.Flush()
}

// formatAttrs prints attributes as 'toxic add -a' takes them (lists
// comma-separated, maps K=V,...), leaving out those that are unset.
func formatAttrs(attrs map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		if v := formatAttr(attrs[k]); v != "" && !(k == "truncate" && v == "-1") {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

func formatAttr(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case []any:
		items := make([]string, len(v))
		for i, x := range v {
			items[i] = formatAttr(x)
		}
		return strings.Join(items, ",")
	case map[string]any:
		items := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			items = append(items, k+"="+formatAttr(v[k]))
		}
		return strings.Join(items, ",")
	}
	return fmt.Sprint(v)
}

// toxicFlags are the flags of toxic add and update, as toxiproxy-cli has them.
type toxicFlags struct {
	name, typ        string
	attrs            []string
	toxicity         float32
	upstream, downst bool
}

// attributeHelp describes the attributes of a type, e.g. "latency (ms), jitter (ms)".
func attributeHelp(typ string) string {
	var parts []string
	for _, a := range proxy.ToxicAttributes[typ] {
		parts = append(parts, fmt.Sprintf("%s (%s)", a.Name, a.Unit))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// parseAttrs turns KEY=VALUE pairs into attributes. For a type this
// command knows, keys must be the type's and values integers (a typo would
// otherwise make a toxic that does nothing); for another type, numbers
// become JSON numbers and anything else stays a string, as toxiproxy-cli
// sends them.
func parseAttrs(typ string, pairs []string) (map[string]any, error) {
	known, typeKnown := proxy.ToxicAttributes[typ]
	out := map[string]any{}
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--attribute %q: want KEY=VALUE, e.g. -a latency=1000", kv)
		}
		n, intErr := strconv.ParseInt(v, 10, 64)
		if !typeKnown {
			switch f, err := strconv.ParseFloat(v, 64); {
			case intErr == nil:
				out[k] = n
			case err == nil:
				out[k] = f
			default:
				out[k] = v
			}
			continue
		}
		i := slices.IndexFunc(known, func(a proxy.Attribute) bool { return a.Name == k })
		if i < 0 {
			return nil, usagef("--attribute %s: a %s toxic has no attribute %q; its attributes: %s", kv, typ, k, attributeHelp(typ))
		}
		switch unit := known[i].Unit; {
		case unit == "text" || unit == "list" || unit == "map":
			out[k] = v // lists as "a,b", maps as "K=V,K=V"
		case intErr != nil:
			return nil, usagef("--attribute %s: %s takes a whole number (%s), got %q", kv, k, unit, v)
		default:
			out[k] = n
		}
	}
	return out, nil
}

func newToxicCmd() *cobra.Command {
	var a apiFlags
	cmd := &cobra.Command{
		Use:   "toxic",
		Short: "Add, update and remove toxics (faults) on a proxy",
		Long: `Add, update and remove toxics on a proxy of a proxy server ('faultline serve' or
any Toxiproxy 2.x). The flags follow toxiproxy-cli's.

Toxic types and their attributes (whole numbers unless said):
` + proxy.ToxicHelp() + `
HTTP toxics (faultline only) act on whole HTTP/1.1 requests and responses; each
takes method=M and path=GLOB to pick requests (and phase=request|response where
it says so), and toxicity is drawn per request. Lists are comma-separated, maps
K=V,K=V.

A toxic acts on one stream: downstream (server -> client, the default, -d) or
upstream (client -> server, -u). To black-hole requests, put timeout on the
upstream stream: on the downstream one, a server that closes after replying
still ends the connection. Toxicity (0 to 1) is the share of connections a
toxic applies to, drawn per connection.`,
		Example: `  faultline toxic add redis -t latency -a latency=1000 -a jitter=100
  faultline toxic add redis -t bandwidth -a rate=10 -u --toxicity 0.5 -n slow_uploads
  faultline toxic update redis -n latency_downstream -a latency=2000
  faultline toxic remove redis -n latency_downstream`,
	}
	group(cmd)
	a.register(cmd)

	cmd.AddCommand(newToxicAddCmd(&a), newToxicUpdateCmd(&a), newToxicRemoveCmd(&a))
	hintNoServer(cmd, &a)
	return cmd
}

// newToxicAddCmd is faultline toxic add.
func newToxicAddCmd(a *apiFlags) *cobra.Command {
	var f toxicFlags
	add := &cobra.Command{
		Use: "add PROXY -t TYPE [-a KEY=VALUE]...", Short: "Add a toxic to a proxy", Args: exactArgs("PROXY"),
		ValidArgsFunction: a.completeProxy,
		Example: `  faultline toxic add redis -t latency -a latency=1000 -a jitter=100   # replies 1 s ± 0.1 s late
  faultline toxic add redis -t timeout -u                              # requests vanish
  faultline toxic add redis -t reset_peer -u -a timeout=500            # RST 0.5 s after a request
  faultline toxic add redis -t bandwidth -a rate=100 --toxicity 0.3    # 100 KB/s for 30 % of connections
  faultline toxic add redis -t limit_data -a bytes=1024 -n cut_at_1k   # replies cut after 1 KiB`,
		RunE: func(c *cobra.Command, args []string) error {
			if f.typ == "" {
				return usagef("toxic add: --type (-t) is required, one of %s", strings.Join(proxy.ToxicTypes, ", "))
			}
			if _, ok := proxy.ToxicAttributes[f.typ]; !ok {
				return usagef("toxic add: unknown type %q, want one of %s", f.typ, strings.Join(proxy.ToxicTypes, ", "))
			}
			if f.upstream && f.downst {
				return usagef("toxic add: give --upstream (-u) or --downstream (-d), not both")
			}
			if f.toxicity < 0 || f.toxicity > 1 {
				return usagef("toxic add: --toxicity must be between 0 and 1, got %g", f.toxicity)
			}
			attrs, err := parseAttrs(f.typ, f.attrs)
			if err != nil {
				return err
			}
			t := proxy.ToxicInfo{Name: f.name, Type: f.typ, Toxicity: f.toxicity, Attributes: attrs, Stream: "downstream"}
			if f.upstream {
				t.Stream = "upstream"
			}
			if t.Name == "" {
				t.Name = t.Type + "_" + t.Stream
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			got, err := cl.AddToxic(c.Context(), args[0], t)
			var ae *proxy.APIError
			if errors.As(err, &ae) && ae.Status == http.StatusConflict && !refusedAsHalted(err) {
				return failure(fmt.Errorf("proxy %s: toxic %s: %w (give another name with -n, or change it: faultline toxic update %s -n %s -a ...)",
					args[0], t.Name, err, args[0], t.Name))
			}
			if err != nil {
				return inProxy(args[0], err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), got)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "added %s toxic %s on %s (%s, toxicity %g): %s\n",
				got.Type, got.Name, args[0], got.Stream, got.Toxicity, formatAttrs(got.Attributes))
			return err
		},
	}
	add.Flags().StringVarP(&f.name, "toxicName", "n", "", "toxic `name` (default TYPE_STREAM, e.g. latency_downstream)")
	add.Flags().StringVarP(&f.typ, "type", "t", "", "toxic `type`: "+strings.Join(proxy.ToxicTypes, ", "))
	add.Flags().StringArrayVarP(&f.attrs, "attribute", "a", nil, "`KEY=VALUE` attribute, repeatable (see 'faultline toxic --help')")
	add.Flags().Float32Var(&f.toxicity, "toxicity", 1, "`share` of connections affected, 0 to 1")
	add.Flags().BoolVarP(&f.upstream, "upstream", "u", false, "act on the upstream stream (client -> server)")
	add.Flags().BoolVarP(&f.downst, "downstream", "d", false, "act on the downstream stream (server -> client, the default)")
	_ = add.RegisterFlagCompletionFunc("type", completeTypes)

	return add
}

// newToxicUpdateCmd is faultline toxic update.
func newToxicUpdateCmd(a *apiFlags) *cobra.Command {
	var uf toxicFlags
	update := &cobra.Command{
		Use: "update PROXY -n NAME [-a KEY=VALUE]... [--toxicity F]", Short: "Change a toxic's attributes or toxicity",
		Long: `Change a toxic's attributes (merged: attributes not given keep their
value) or its toxicity, on live connections too. Unlike toxiproxy-cli,
the toxicity stays as it is unless --toxicity is given.`,
		Example: `  faultline toxic update redis -n latency_downstream -a latency=2000
  faultline toxic update redis -n slow_uploads --toxicity 1`,
		Args:              exactArgs("PROXY"),
		ValidArgsFunction: a.completeProxy,
		RunE: func(c *cobra.Command, args []string) error {
			if uf.name == "" {
				return usagef("toxic update: --toxicName (-n) is required")
			}
			var tox *float32
			if c.Flags().Changed("toxicity") {
				if uf.toxicity < 0 || uf.toxicity > 1 {
					return usagef("toxic update: --toxicity must be between 0 and 1, got %g", uf.toxicity)
				}
				tox = &uf.toxicity
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			// The toxic's type tells which attributes it takes.
			cur, err := cl.Toxic(c.Context(), args[0], uf.name)
			if err != nil {
				return inProxy(args[0], fmt.Errorf("toxic %s: %w", uf.name, err))
			}
			attrs, err := parseAttrs(cur.Type, uf.attrs)
			if err != nil {
				return err
			}
			got, err := cl.UpdateToxic(c.Context(), args[0], uf.name, tox, attrs)
			if err != nil {
				return inProxy(args[0], fmt.Errorf("toxic %s: %w", uf.name, err))
			}
			if a.json {
				return printJSON(c.OutOrStdout(), got)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "updated toxic %s on %s (toxicity %g): %s\n", got.Name, args[0], got.Toxicity, formatAttrs(got.Attributes))
			return err
		},
	}
	update.Flags().StringVarP(&uf.name, "toxicName", "n", "", "`name` of the toxic to change")
	update.Flags().StringArrayVarP(&uf.attrs, "attribute", "a", nil, "`KEY=VALUE` attribute, repeatable")
	update.Flags().Float32Var(&uf.toxicity, "toxicity", 0, "new `share` of connections affected, 0 to 1 (default: unchanged)")
	_ = update.RegisterFlagCompletionFunc("toxicName", a.completeToxic)

	return update
}

// newToxicRemoveCmd is faultline toxic remove.
func newToxicRemoveCmd(a *apiFlags) *cobra.Command {
	var rname string
	remove := &cobra.Command{
		Use: "remove PROXY -n NAME", Aliases: []string{"delete", "rm"}, Short: "Remove a toxic", Args: exactArgs("PROXY"),
		ValidArgsFunction: a.completeProxy,
		Example:           "  faultline toxic remove redis -n latency_downstream",
		RunE: func(c *cobra.Command, args []string) error {
			if rname == "" {
				return usagef("toxic remove: --toxicName (-n) is required")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.RemoveToxic(c.Context(), args[0], rname); err != nil {
				return inProxy(args[0], fmt.Errorf("toxic %s: %w", rname, err))
			}
			if a.json {
				return nil
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "removed toxic %s from %s\n", rname, args[0])
			return err
		},
	}
	remove.Flags().StringVarP(&rname, "toxicName", "n", "", "`name` of the toxic to remove")
	_ = remove.RegisterFlagCompletionFunc("toxicName", a.completeToxic)
	return remove
}
