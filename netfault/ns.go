package netfault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Errors that callers branch on.
var (
	// ErrGone: the namespace is no longer at its path, nor anywhere faultline
	// can find it (every process in it exited, its bind mount was removed).
	ErrGone = errors.New("namespace gone")
	// ErrReplaced: the path now names another namespace than the one recorded
	// (a reused pid, a namespace made anew under the same name).
	ErrReplaced = errors.New("path names another namespace")
	// ErrHostNamespace: refused in the host's own network namespace.
	ErrHostNamespace = errors.New("host network namespace")
)

// The host's network namespace is that of PID 1 (init) of faultline's PID
// namespace, whatever namespace faultline itself runs in. Where PID 1's is
// unreadable (an init that is not dumpable), that of kthreadd, PID 2, which
// the kernel keeps in the initial namespace, stands in for it.
const (
	hostNSPath     = "/proc/1/ns/net"
	kthreadNSPath  = "/proc/2/ns/net"
	kthreadCommand = "/proc/2/comm"
)

// nsfsMagic is the file system type of namespace files (NSFS_MAGIC).
const nsfsMagic = 0x6e736673

// NS names a network namespace: a path (/proc/PID/ns/net,
// /run/netns/NAME) and the identity of the namespace that path held when it
// was recorded, the device and inode of its nsfs file. A zero Ino means the
// identity is unknown (recorded before the namespace existed).
type NS struct {
	Path string `json:"path"`
	Dev  uint64 `json:"dev,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
}

func (n NS) String() string {
	if n.Ino == 0 {
		return n.Path
	}
	return fmt.Sprintf("%s (net:[%d])", n.Path, n.Ino)
}

// OpenNS records the namespace that path names now.
func OpenNS(path string) (NS, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NS{}, fmt.Errorf("network namespace %s: %w", path, err)
	}
	if err := isNSFS(path); err != nil {
		return NS{}, err
	}
	return NS{Path: path, Dev: st.Dev, Ino: st.Ino}, nil
}

// PidNS records the network namespace of a process: /proc/PID/ns/net.
func PidNS(pid int) (NS, error) { return OpenNS(fmt.Sprintf("/proc/%d/ns/net", pid)) }

// HostNS records the host's network namespace: that of PID 1, or where
// that is unreadable, of kthreadd (PID 2), which lives in the initial
// namespace. Faultline's own namespace may differ.
func HostNS() (NS, error) {
	ns, err := OpenNS(hostNSPath)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return ns, err
	}
	if comm, cerr := os.ReadFile(kthreadCommand); cerr == nil && strings.TrimSpace(string(comm)) == "kthreadd" {
		if kns, kerr := OpenNS(kthreadNSPath); kerr == nil {
			return kns, nil
		}
	}
	return NS{}, err
}

func isNSFS(path string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	if sfs.Type != nsfsMagic {
		return fmt.Errorf("network namespace %s: not a namespace file", path)
	}
	return nil
}

// Same reports whether n and m are the same namespace.
func (n NS) Same(m NS) bool { return n.Ino != 0 && n.Dev == m.Dev && n.Ino == m.Ino }

// IsHost reports whether n is the host's network namespace, i.e. the one of
// PID 1 (the init of faultline's PID namespace; see HostNS), compared by
// device and inode. Faultline's own namespace is not the reference:
// faultline may run in a namespace of its own, and what must be protected
// is the host's.
func (n NS) IsHost() (bool, error) {
	h, err := HostNS()
	if err != nil {
		return false, err
	}
	if n.Ino == 0 {
		if n, err = OpenNS(n.Path); err != nil {
			return false, err
		}
	}
	return n.Same(h), nil
}

// Check reports whether n.Path still names the namespace recorded in n:
// nil if it does, ErrReplaced if it names another one, ErrGone if there is
// no namespace there.
func (n NS) Check() error {
	f, err := n.open()
	if err != nil {
		return err
	}
	return f.Close()
}

// open opens the namespace n names: at its path if that still holds it,
// else wherever a process or a bind mount still holds it (a recorded
// /proc/PID path whose process exited while others in the namespace live
// on). With no recorded identity, the path is taken as it is.
func (n NS) open() (*os.File, error) {
	f, err := openAt(n.Path)
	if err == nil {
		if n.Ino == 0 {
			return f, nil
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, err
		}
		if st.Dev == n.Dev && st.Ino == n.Ino {
			return f, nil
		}
		f.Close()
		err = ErrReplaced
	}
	if n.Ino == 0 {
		return nil, err
	}
	if g := n.find(); g != nil {
		return g, nil
	}
	if errors.Is(err, ErrReplaced) {
		return nil, fmt.Errorf("%s: %w", n, ErrReplaced)
	}
	return nil, fmt.Errorf("%s: %w", n, ErrGone)
}

// openAt opens a namespace file; a path that does not exist or holds no
// namespace (an unmounted /run/netns file) is ErrGone.
func openAt(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("%s: %w", path, ErrGone)
		}
		return nil, err
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil || sfs.Type != nsfsMagic {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrGone)
	}
	return f, nil
}

// find looks for the namespace among the bind mounts in /run/netns and the
// processes in /proc.
func (n NS) find() *os.File {
	var paths []string
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			paths = append(paths, filepath.Join(netnsDir, e.Name()))
		}
	}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			if name := e.Name(); name[0] >= '0' && name[0] <= '9' {
				paths = append(paths, "/proc/"+name+"/ns/net")
			}
		}
	}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Dev != n.Dev || st.Ino != n.Ino {
			continue
		}
		if f, err := openAt(p); err == nil {
			var st unix.Stat_t
			if unix.Fstat(int(f.Fd()), &st) == nil && st.Dev == n.Dev && st.Ino == n.Ino {
				return f
			}
			f.Close()
		}
	}
	return nil
}

// Do runs fn on an OS thread that has entered the namespace, and returns
// its error. Sockets that fn creates belong to the namespace for their whole
// life, whatever thread uses them later. fn must not start goroutines that
// expect to be in the namespace. The thread goes back to its own namespace
// afterwards, or, if it cannot, ends.
func (n NS) Do(fn func() error) error {
	f, err := n.open()
	if err != nil {
		return err
	}
	defer f.Close()
	if inSelf(f) { // no setns: an agent in a pod may not
		return callSafely(fn)
	}
	return doIn(int(f.Fd()), fn)
}

// doIn runs fn on a locked thread that entered the namespace of nsfd.
func doIn(nsfd int, fn func() error) error {
	return onThread(func() error {
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return nil
	}, fn)
}

// onThread runs enter and then fn on a locked OS thread, and puts the
// thread back in the network namespace it had before enter, even after a
// panic. Threads are never left to end in another namespace: when the Go
// runtime gives a goroutine the main thread, that thread does not end with
// it but is parked for good, and would hold the namespace and stand for
// the process (/proc/self) there. If the thread cannot go back, it stays
// locked and ends (or is parked) with the goroutine, so no other goroutine
// runs in the wrong namespace.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		err = callSafely(enter)
		if err == nil {
			err = callSafely(fn)
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave network namespace: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// callSafely runs fn and turns a panic into an error, so that the thread
// that runs it still goes back to its namespace.
func callSafely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in network namespace: %v", r)
		}
	}()
	return fn()
}

// validName reports whether s may be part of an interface, namespace, table
// or chain name.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0
}

// inSelf reports whether the namespace open as f is faultline's own. There
// a netlink socket is opened as it is, without setns, which needs
// CAP_SYS_ADMIN: an agent in a pod has NET_ADMIN alone.
func inSelf(f *os.File) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat("/proc/thread-self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// nftConn is an nftables connection to the namespace open as f.
func nftConn(f *os.File) (*nftables.Conn, error) {
	if inSelf(f) {
		return nftables.New()
	}
	return nftables.New(nftables.WithNetNSFd(int(f.Fd())))
}

// nlHandle is a netlink handle in the namespace open as f.
func nlHandle(f *os.File) (*netlink.Handle, error) {
	if inSelf(f) {
		return netlink.NewHandle()
	}
	return netlink.NewHandleAt(netns.NsHandle(int(f.Fd())))
}
