package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/proxy"
)

// apiFlags are the flags every API client command takes.
type apiFlags struct {
	api, token string
	json       bool
}

func (a *apiFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.api, "api", envOr("http://127.0.0.1:8474", "FAULTLINE_API", "TOXIPROXY_URL"),
		"`URL` of the proxy API: faultline serve or any Toxiproxy ($FAULTLINE_API, $TOXIPROXY_URL)")
	f.StringVar(&a.token, "token", "", "bearer `token` for the API (default $FAULTLINE_TOKEN)")
	f.BoolVar(&a.json, "json", false, "print the API's JSON instead of a table")
}

func (a *apiFlags) client() *proxy.Client {
	token := a.token
	if token == "" {
		token = envOr("", "FAULTLINE_TOKEN")
	}
	return proxy.NewClient(a.api, token)
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
	ctx := func(c *cobra.Command) context.Context { return c.Context() }

	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List proxies", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ps, err := a.client().Proxies(ctx(c))
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

	var listen, upstream string
	create := &cobra.Command{
		Use: "create NAME -l LISTEN -u UPSTREAM", Short: "Create a proxy", Args: exactArgs("NAME"),
		Example: "  faultline proxy create db -l 127.0.0.1:25432 -u 127.0.0.1:5432",
		RunE: func(c *cobra.Command, args []string) error {
			if upstream == "" {
				return usagef("proxy create: --upstream (-u) is required")
			}
			p, err := a.client().CreateProxy(ctx(c), args[0], listen, upstream)
			if err != nil {
				return failure(err)
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

	inspect := &cobra.Command{
		Use: "inspect NAME", Aliases: []string{"i"}, Short: "Show a proxy and its toxics", Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			p, err := a.client().Proxy(ctx(c), args[0])
			if err != nil {
				return failure(err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), p)
			}
			return printProxy(c.OutOrStdout(), p)
		},
	}

	toggle := &cobra.Command{
		Use: "toggle NAME", Short: "Enable a disabled proxy, or disable (take down) an enabled one", Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl := a.client()
			p, err := cl.Proxy(ctx(c), args[0])
			if err != nil {
				return failure(err)
			}
			if p, err = cl.SetEnabled(ctx(c), args[0], !p.Enabled); err != nil {
				return failure(err)
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

	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a proxy, closing its connections", Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := a.client().DeleteProxy(ctx(c), args[0]); err != nil {
				return failure(err)
			}
			if a.json {
				return nil
			}
			_, err := fmt.Fprintf(c.OutOrStdout(), "deleted proxy %s\n", args[0])
			return err
		},
	}
	cmd.AddCommand(list, create, inspect, toggle, del)
	return cmd
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

func formatAttrs(attrs map[string]any) string {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, attrs[k])
	}
	return strings.Join(parts, " ")
}

// toxicFlags are the flags of toxic add and update, as toxiproxy-cli has them.
type toxicFlags struct {
	name, typ        string
	attrs            []string
	toxicity         float32
	upstream, downst bool
}

// parseAttrs turns k=v pairs into attributes: numbers become JSON numbers,
// anything else stays a string (as toxiproxy-cli does).
func parseAttrs(pairs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--attribute %q: want KEY=VALUE, e.g. -a latency=1000", kv)
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = n
		} else {
			out[k] = v
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

Toxic types and attributes (times in milliseconds unless said):
  latency      latency, jitter          delay every chunk by latency ± jitter
  bandwidth    rate (KB/s)              limit the rate; 0 lets nothing through
  slow_close   delay                    delay the close (FIN) of the stream
  timeout      timeout                  swallow data; close after timeout ms of it (0: never)
  reset_peer   timeout                  close with a TCP RST timeout ms after data arrives
  slicer       average_size, size_variation (bytes), delay (µs)
                                        cut data into small pieces, delay apart
  limit_data   bytes                    close the connection after this many bytes
  noop                                  do nothing (useful in tests)

A toxic acts on one stream: downstream (server -> client, the default, -d) or
upstream (client -> server, -u). Toxicity (0..1) is the share of connections
it applies to, drawn per connection.`,
		Example: `  faultline toxic add redis -t latency -a latency=1000 -a jitter=100
  faultline toxic add redis -t bandwidth -a rate=10 -u --toxicity 0.5 -n slow_uploads
  faultline toxic update redis -n latency_downstream -a latency=2000
  faultline toxic remove redis -n latency_downstream`,
	}
	group(cmd)
	a.register(cmd)

	var f toxicFlags
	add := &cobra.Command{
		Use: "add PROXY -t TYPE [-a KEY=VALUE]...", Short: "Add a toxic to a proxy", Args: exactArgs("PROXY"),
		RunE: func(c *cobra.Command, args []string) error {
			if f.typ == "" {
				return usagef("toxic add: --type (-t) is required, one of %s", strings.Join(proxy.ToxicTypes, ", "))
			}
			if f.upstream && f.downst {
				return usagef("toxic add: give --upstream (-u) or --downstream (-d), not both")
			}
			attrs, err := parseAttrs(f.attrs)
			if err != nil {
				return err
			}
			t := proxy.ToxicInfo{Name: f.name, Type: f.typ, Toxicity: f.toxicity, Attributes: attrs}
			if f.upstream {
				t.Stream = "upstream"
			}
			if f.downst {
				t.Stream = "downstream"
			}
			got, err := a.client().AddToxic(c.Context(), args[0], t)
			if err != nil {
				return failure(err)
			}
			if a.json {
				return printJSON(c.OutOrStdout(), got)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "added %s toxic %s on %s (%s, toxicity %g): %s\n",
				got.Type, got.Name, args[0], got.Stream, got.Toxicity, formatAttrs(got.Attributes))
			return err
		},
	}
	add.Flags().StringVarP(&f.name, "toxicName", "n", "", "toxic `name` (default TYPE_STREAM)")
	add.Flags().StringVarP(&f.typ, "type", "t", "", "toxic `type`: "+strings.Join(proxy.ToxicTypes, ", "))
	add.Flags().StringArrayVarP(&f.attrs, "attribute", "a", nil, "`KEY=VALUE` attribute, repeatable")
	add.Flags().Float32Var(&f.toxicity, "toxicity", 1, "share of connections affected, 0 to 1")
	add.Flags().BoolVarP(&f.upstream, "upstream", "u", false, "act on the upstream stream (client -> server)")
	add.Flags().BoolVarP(&f.downst, "downstream", "d", false, "act on the downstream stream (server -> client, the default)")

	var uf toxicFlags
	update := &cobra.Command{
		Use: "update PROXY -n NAME [-a KEY=VALUE]... [--toxicity F]", Short: "Change a toxic's attributes or toxicity",
		Long: `Change a toxic's attributes (merged: attributes not given keep their
value) or its toxicity. Unlike toxiproxy-cli, toxicity is left as it is
unless --toxicity is given.`,
		Args: exactArgs("PROXY"),
		RunE: func(c *cobra.Command, args []string) error {
			if uf.name == "" {
				return usagef("toxic update: --toxicName (-n) is required")
			}
			attrs, err := parseAttrs(uf.attrs)
			if err != nil {
				return err
			}
			var tox *float32
			if c.Flags().Changed("toxicity") {
				tox = &uf.toxicity
			}
			got, err := a.client().UpdateToxic(c.Context(), args[0], uf.name, tox, attrs)
			if err != nil {
				return failure(err)
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
	update.Flags().Float32Var(&uf.toxicity, "toxicity", 1, "share of connections affected, 0 to 1")

	var rname string
	remove := &cobra.Command{
		Use: "remove PROXY -n NAME", Aliases: []string{"delete", "rm"}, Short: "Remove a toxic", Args: exactArgs("PROXY"),
		RunE: func(c *cobra.Command, args []string) error {
			if rname == "" {
				return usagef("toxic remove: --toxicName (-n) is required")
			}
			if err := a.client().RemoveToxic(c.Context(), args[0], rname); err != nil {
				return failure(err)
			}
			if a.json {
				return nil
			}
			_, err := fmt.Fprintf(c.OutOrStdout(), "removed toxic %s from %s\n", rname, args[0])
			return err
		},
	}
	remove.Flags().StringVarP(&rname, "toxicName", "n", "", "`name` of the toxic to remove")
	cmd.AddCommand(add, update, remove)
	return cmd
}
