package netfault

import (
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Leftovers lists what of a run is still on this machine, seen from
// faultline's own network namespace: namespaces bound under /run/netns, the
// run's bridge and veths, and its tables in this namespace. A run that ended
// (or was recovered) leaves none; 'faultline status' and the tests ask.
func Leftovers(run string) ([]string, error) {
	var out []string
	ents, _ := filepath.Glob(filepath.Join(netnsDir, "faultline-"+run+"-*"))
	for _, e := range ents {
		out = append(out, "namespace "+e)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return out, err
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Alias == linkAlias(run) || a.Name == BridgeName(run) || strings.HasPrefix(a.Name, "flv"+shortID(run)+"-") {
			out = append(out, "interface "+a.Name+" ("+l.Type()+")")
		}
	}
	c, err := nftables.New()
	if err != nil {
		return out, err
	}
	tables, err := c.ListTables()
	if err != nil {
		return out, err
	}
	for _, tb := range tables {
		if tb.Name == TableName(run) {
			out = append(out, "nftables table "+tb.Name)
		}
	}
	return out, nil
}
