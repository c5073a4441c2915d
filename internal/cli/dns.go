package cli

import (
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/dnsfault"
	"github.com/faultline/faultline/state"
)

func newDNSCmd(g *globals) *cobra.Command {
	var listen, upstream string
	var allowRemote bool
	var rules, records []string
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Run a DNS resolver that fails on purpose for the names you choose",
		Long: `Serves DNS on --listen (UDP and TCP). A query whose name matches a --rule gets
that rule's failure; others are answered from --record or forwarded to
--upstream. Point a service's resolver at it (/etc/resolv.conf in a container or
network namespace, or the service's own resolver setting) to see what it does
when DNS fails.

Rules are PATTERN=ACTION, the pattern a glob over the name (no final dot), the
first match wins:
  NXDOMAIN         the name does not exist
  SERVFAIL         the resolver failed
  REFUSED          the resolver refuses to answer
  TIMEOUT          no answer at all: the client times out
  DELAY(2s)        the usual answer, late
  ADDRESS(ip)      a wrong address

It stops on Ctrl-C, SIGTERM or 'faultline halt'; nothing outlives it.`,
		Example: `  faultline dns --listen 127.0.0.1:5353 --upstream 127.0.0.53:53 --rule 'payments.*=SERVFAIL'
  faultline dns --listen 127.0.0.1:5353 --record payments.shop.test=127.0.0.1 --rule '*.shop.test=DELAY(3s)'
  dig @127.0.0.1 -p 5353 payments.shop.test`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			rs, err := dnsfault.ParseRules(rules)
			if err != nil {
				return usagef("--rule: %v", err)
			}
			recs := map[string][]net.IP{}
			for _, r := range records {
				name, addr, ok := strings.Cut(r, "=")
				ip := net.ParseIP(strings.TrimSpace(addr))
				if !ok || ip == nil || name == "" {
					return usagef("--record %q: want NAME=IP, e.g. payments.shop.test=127.0.0.1", r)
				}
				name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
				recs[name] = append(recs[name], ip)
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return usagef("--listen %q: want HOST:PORT, e.g. 127.0.0.1:5353", listen)
			}
			if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && !allowRemote {
				return usagef("--listen %s is not a loopback address: that serves DNS (and forwards to --upstream) to the network, an open resolver; pass --allow-remote if that is intended", listen)
			}
			if upstream != "" {
				if _, _, err := net.SplitHostPort(upstream); err != nil {
					return usagef("--upstream %q: want HOST:PORT, e.g. 127.0.0.53:53", upstream)
				}
			}
			stateDir := g.state()
			ctx, stop, err := killSwitch(c, stateDir)
			if err != nil {
				return err
			}
			defer stop()
			s := dnsfault.New(dnsfault.Config{Listen: listen, Upstream: upstream, Records: recs, Rules: rs})
			if err := s.Start(); err != nil {
				return &exitError{ExitError, fmt.Errorf("listen on %s: %w", listen, err)}
			}
			defer s.Stop()
			fmt.Fprintf(c.OutOrStdout(), "faultline dns on %s (udp and tcp), upstream %s\n", s.Addr(), orNone(upstream))
			for _, r := range rs {
				fmt.Fprintf(c.OutOrStdout(), "  rule %s\n", r)
			}
			<-ctx.Done()
			if halted, _ := state.Halted(stateDir); halted {
				fmt.Fprintf(c.ErrOrStderr(), "halted: stopping (%d queries, %d faulted)\n", s.Queries(), s.Faulted())
				return &exitError{ExitAborted, fmt.Errorf("halted")}
			}
			fmt.Fprintf(c.ErrOrStderr(), "stopping (%d queries, %d faulted)\n", s.Queries(), s.Faulted())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:5353", "`HOST:PORT` to serve DNS on, UDP and TCP")
	f.StringVar(&upstream, "upstream", "", "resolver `HOST:PORT` to forward other names to (default: none, they get NXDOMAIN)")
	f.StringArrayVar(&rules, "rule", nil, "`PATTERN=ACTION`, repeatable, e.g. 'payments.*=SERVFAIL'")
	f.StringArrayVar(&records, "record", nil, "`NAME=IP` answered without asking upstream, repeatable")
	f.BoolVar(&allowRemote, "allow-remote", false, "allow --listen on an address other than loopback")
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
