// Package netfault reaches the traffic that is already there: it makes
// isolated network namespaces for launched processes and injects network
// faults inside any network namespace — a partition, packet loss, and the
// interception of TCP connections and DNS queries into faultline's own
// proxy and DNS server — through netlink and nf_tables only (no nft, tc, ip
// or iptables binary). It is Linux-only and needs CAP_NET_ADMIN and
// CAP_SYS_ADMIN (root).
//
// It owns kernel state and nothing else: it knows no experiment, journal or
// runner. Every change it makes is an Op, a plain value that names the change
// completely. Each function that changes something first hands the Op to the
// caller's Journal and makes the change only when the journal returned nil;
// Undo reverts an Op from its fields alone, in any process, and treats what
// is already gone as reverted. A runner killed with SIGKILL is therefore
// recovered by another process that reads the journal and calls Undo on each
// Op, last first:
//
//	journal ──Op──▶ disk         (before the change)
//	    │
//	    ▼
//	change (netlink, nf_tables)  ──▶  Undo(ctx, op)  (now, or after a crash)
//
// What it makes, and how each is named so that anyone can find it:
//
//   - per run, a bridge flb-<id> (alias "faultline <run>") holding the host's
//     address on the run's subnet (default a /24 inside 198.18.0.0/15);
//   - per isolated instance, a network namespace bound at
//     /run/netns/faultline-<run>-<n> and a veth pair flv<id>-<n> ⇄ eth0;
//   - per run and namespace, nftables tables named faultline_<run> (family
//     inet and, for drops the sender must not see, netdev), each fault in
//     chains of its own whose names start with the fault's name.
//
// A namespace is named by a path and the identity (device and inode) of its
// nsfs file (NS), so that nothing acts on another namespace that took over
// the path or the pid.
package netfault
