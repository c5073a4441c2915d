package kubetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What a real node changes on the host, and how it is given back. One node
// runs on a machine at a time (lockFile); everything it adds is named here,
// so that Close, or the next node after a test binary was killed, finds and
// removes all of it whatever state it was left in.
const (
	lockFile  = "/run/faultline-kubenode.lock"
	stateFile = "/run/faultline-kubenode.json" // what the host had before: survives nodeDir
	nodeDir   = "/run/faultline-kubenode"      // every file the node writes, removed whole

	bridgeName = "flkube0"
	// Inside 198.18.0.0/15 (the network-test range), in its upper half, away
	// from the /24s that runs give isolated processes.
	podCIDR     = "198.19.240.0/24"
	gatewayIP   = "198.19.240.1" // the bridge's address: node IP, DNS server, probes' source
	serviceCIDR = "198.19.241.0/24"
	dnsIP       = "198.19.241.10" // the kube-dns Service
)

// kubeletSysctls are the kernel settings the kubelet sets at start (its
// "kernel tunables"; protectKernelDefaults makes it refuse to start
// instead); the node writes back what the host had.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// hostDirs are directories outside nodeDir that the node's parts create
// with fixed names: the kubelet's device-plugin socket directory
// (/var/lib/kubelet/device-plugins, a constant of the kubelet), its
// container log links (/var/log/containers), libcni's result cache and
// libmount's utab (when the kubelet runs mount). The node removes those
// that were not there before it started.
var hostDirs = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/mount"}

// hostState is what the host had before the node changed it.
type hostState struct {
	Sysctls map[string]string `json:"sysctls"`
	// Created are the hostDirs that did not exist.
	Created []string `json:"created"`
}

// lockHost takes the machine's real-node lock, waiting at most limit for
// another test binary's node to stop. Closing the file releases it, and so
// does the process's death.
func lockHost(limit time.Duration) (*os.File, error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(limit)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("kubetest: another real node holds %s: %w", lockFile, err)
		}
		time.Sleep(500 * time.Millisecond) // polling another process's lock
	}
}

// saveHostState records what the node is about to change, unless a node
// that died already recorded it (its record is the truth: the host still
// has that node's changes).
func saveHostState() error {
	if _, err := os.Stat(stateFile); err == nil {
		return nil
	}
	st := hostState{Sysctls: map[string]string{}}
	for _, s := range kubeletSysctls {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil {
			return err
		}
		st.Sysctls[s] = strings.TrimSpace(string(b))
	}
	for _, d := range hostDirs {
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			st.Created = append(st.Created, d)
		}
	}
	b, _ := json.Marshal(st)
	return os.WriteFile(stateFile, b, 0o600)
}

// sweepHost removes everything a node adds to the host, whether it stopped
// cleanly or not: it kills the containers' processes and shims, unmounts
// what is mounted under nodeDir, deletes the bridge (and the pods' veths
// on it), kube-proxy's nftables tables, the kubelet's iptables chains and
// the pod cgroups, puts back the sysctls, and removes nodeDir and the
// directories it created. It returns what it could not remove.
func sweepHost(assets string) error {
	var errs []error
	killNodeProcesses(assets)
	errs = append(errs, unmountUnder(nodeDir))
	if linkExists(bridgeName) {
		if out, err := exec.Command("ip", "link", "delete", bridgeName).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %v: %s", bridgeName, err, out))
		}
	}
	for _, family := range []string{"ip", "ip6"} {
		if nftTableExists(family, "kube-proxy") {
			if out, err := exec.Command("nft", "delete", "table", family, "kube-proxy").CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete nftables table %s kube-proxy: %v: %s", family, err, out))
			}
		}
	}
	removeKubeletIPTables()
	errs = append(errs, removePodCgroups())
	if b, err := os.ReadFile(stateFile); err == nil {
		var st hostState
		if err := json.Unmarshal(b, &st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", stateFile, err))
		}
		for s, v := range st.Sysctls {
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore %s: %w", s, err))
			}
		}
		for _, d := range st.Created {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	errs = append(errs, os.RemoveAll(nodeDir))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return removeIfExists(stateFile)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// killNodeProcesses kills, and waits at most 10 s for, every process in a
// pod's cgroup and every process run from the node's binaries (shims that
// outlived containerd, daemons of a node whose test binary was killed).
func killNodeProcesses(assets string) {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if (assets != "" && strings.HasPrefix(exe, assets+"/")) || strings.Contains(string(cg), ":/kubepods") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			pids = append(pids, pid)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			// A killed process is gone, or a zombie its parent has not reaped.
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || strings.Contains(string(b), ") Z ") {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling the kernel's view of a killed process
		}
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	return mounts
}

func unmountUnder(dir string) error {
	var errs []error
	for _, m := range mountsUnder(dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

func nftTableExists(family, name string) bool {
	return exec.Command("nft", "list", "table", family, name).Run() == nil
}

// removeKubeletIPTables deletes the chains the kubelet adds when an
// iptables binary is installed (KUBE-IPTABLES-HINT, KUBE-FIREWALL and its
// jumps, KUBE-KUBELET-CANARY); without one it adds none.
func removeKubeletIPTables() {
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		ipt := func(args ...string) { _ = exec.Command(bin, append([]string{"-w", "5"}, args...)...).Run() }
		for _, hook := range []string{"INPUT", "OUTPUT"} {
			for exec.Command(bin, "-w", "5", "-t", "filter", "-C", hook, "-j", "KUBE-FIREWALL").Run() == nil {
				ipt("-t", "filter", "-D", hook, "-j", "KUBE-FIREWALL")
			}
		}
		ipt("-t", "filter", "-F", "KUBE-FIREWALL")
		ipt("-t", "filter", "-X", "KUBE-FIREWALL")
		ipt("-t", "mangle", "-X", "KUBE-IPTABLES-HINT")
		for _, table := range []string{"mangle", "nat", "filter"} {
			ipt("-t", table, "-X", "KUBE-KUBELET-CANARY")
		}
	}
}

// podCgroups lists the kubelet's cgroup directories (kubepods and what is
// under it) in every hierarchy, deepest first.
func podCgroups() []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

func removePodCgroups() error {
	var errs []error
	for _, d := range podCgroups() {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// leftovers lists what of a node is still on the host.
func leftovers(assets string) []string {
	var left []string
	if linkExists(bridgeName) {
		left = append(left, "bridge "+bridgeName)
	}
	for _, family := range []string{"ip", "ip6"} {
		if nftTableExists(family, "kube-proxy") {
			left = append(left, "nftables table "+family+" kube-proxy")
		}
	}
	for _, m := range mountsUnder(nodeDir) {
		left = append(left, "mount "+m)
	}
	for _, d := range podCgroups() {
		left = append(left, "cgroup "+d)
	}
	for _, p := range []string{nodeDir, stateFile} {
		if _, err := os.Lstat(p); err == nil {
			left = append(left, p)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && assets != "" && strings.HasPrefix(exe, assets+"/") {
			left = append(left, "process "+e.Name()+" "+exe)
		}
	}
	return left
}
