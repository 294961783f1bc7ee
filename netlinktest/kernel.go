package netlinktest

import (
	"fmt"
	"net"
	"sort"
	"sync"
	"syscall"

	"github.com/tabbynet/tabby/netlinktest/internal/abi"
	"github.com/vishvananda/netlink"
)

// fdBase is the first fake namespace file descriptor. Fake descriptors are
// far above what a test process normally has open, so that a real
// descriptor passed by mistake is reported (EBADF) instead of silently
// naming a fake namespace.
const fdBase = 1 << 20

// Kernel is a handle on one network namespace of an in-memory machine. Its
// netlink methods have the signatures of the same methods of
// *netlink.Handle and follow the real kernel's semantics (see the package
// documentation). All handles of a machine share one lock: Kernel is safe
// for concurrent use.
type Kernel struct {
	m  *machine
	ns *namespace
}

// machine is one fake host: its namespaces and everything machine-wide.
type machine struct {
	mu       sync.Mutex
	byPath   map[string]*namespace
	byFd     map[int]*namespace
	all      []*namespace // in creation order, including deleted ones
	nextFd   int
	nextMAC  uint64
	writes   int
	failures []*failure
	seq      uint32 // netlink sequence numbers for subscription messages
	sysctls  *sysctlTables
}

// namespace is one network namespace.
type namespace struct {
	m         *machine
	path      string
	fd        int
	id        int // creation order on the machine, for stable dumps
	deleted   bool
	links     map[int]*link
	nextIndex int
	routes    []*route
	neighs    []*neigh
	sysctl    map[string]string
	nsids     map[*namespace]int // ids this namespace assigned to others
	subs      []*subscription
}

// New returns a new machine and a handle on its initial namespace. Like a
// freshly booted kernel's namespace it holds only lo (index 1, down, no
// addresses).
func New() *Kernel {
	m := &machine{
		byPath:  map[string]*namespace{},
		byFd:    map[int]*namespace{},
		nextFd:  fdBase,
		nextMAC: 1,
		sysctls: newSysctlTables(),
	}
	ns := m.newNamespace("")
	return &Kernel{m: m, ns: ns}
}

func (m *machine) newNamespace(path string) *namespace {
	ns := &namespace{
		m:         m,
		path:      path,
		fd:        m.nextFd,
		id:        len(m.all),
		links:     map[int]*link{},
		nextIndex: 1,
		sysctl:    map[string]string{},
		nsids:     map[*namespace]int{},
	}
	m.nextFd++
	m.byPath[path] = ns
	m.byFd[ns.fd] = ns
	m.all = append(m.all, ns)
	lo := &link{
		kind:   kindLoopback,
		name:   "lo",
		mtu:    65536,
		txqlen: 1000,
	}
	ns.register(lo, 0)
	return ns
}

// NewNamespace creates a namespace bound at path, like `ip netns add`, and
// returns a handle on it. It holds only lo, down. A path already bound
// gives an error wrapping EEXIST.
func (k *Kernel) NewNamespace(path string) (*Kernel, error) {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if path == "" {
		return nil, fmt.Errorf("netlinktest: new namespace: empty path: %w", abi.EINVAL)
	}
	if _, ok := k.m.byPath[path]; ok {
		return nil, fmt.Errorf("netlinktest: new namespace %s: %w", path, abi.EEXIST)
	}
	return &Kernel{m: k.m, ns: k.m.newNamespace(path)}, nil
}

// NamespaceAt returns a handle on the namespace bound at path ("" is the
// initial namespace). An unknown path gives an error wrapping ENOENT.
func (k *Kernel) NamespaceAt(path string) (*Kernel, error) {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	ns, ok := k.m.byPath[path]
	if !ok {
		return nil, fmt.Errorf("netlinktest: open namespace %s: %w", path, abi.ENOENT)
	}
	return &Kernel{m: k.m, ns: ns}, nil
}

// DeleteNamespace destroys the namespace bound at path: its links vanish
// (and with them veth peers in other namespaces), and the path is unbound.
// Handles on it stay usable but see an empty namespace without lo. An
// unknown path gives an error wrapping ENOENT; the initial namespace
// cannot be deleted (EINVAL).
func (k *Kernel) DeleteNamespace(path string) error {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if path == "" {
		return fmt.Errorf("netlinktest: delete namespace: the initial namespace: %w", abi.EINVAL)
	}
	ns, ok := k.m.byPath[path]
	if !ok {
		return fmt.Errorf("netlinktest: delete namespace %s: %w", path, abi.ENOENT)
	}
	for _, l := range ns.sortedLinks() {
		if _, still := ns.links[l.index]; still {
			ns.unregister(l)
		}
	}
	ns.deleted = true
	for _, o := range k.m.all {
		delete(o.nsids, ns) // its ids are free again
	}
	delete(k.m.byPath, path)
	delete(k.m.byFd, ns.fd)
	for _, s := range ns.subs {
		s.close()
	}
	ns.subs = nil
	return nil
}

// Path is the path the namespace was created at; "" for the initial one.
func (k *Kernel) Path() string { return k.ns.path }

// Fd is a fake file descriptor naming this namespace, to be used as
// netlink.NsFd(k.Fd()) in Veth.PeerNamespace, LinkAttrs.Namespace and
// LinkSetNsFd on handles of the same machine. It is not a real descriptor.
func (k *Kernel) Fd() int { return k.ns.fd }

// Close does nothing, like (*netlink.Handle).Close on a handle that is
// still usable afterwards in the fake.
func (k *Kernel) Close() {}

// Writes reports how many mutating calls have succeeded on the whole
// machine so far (on any handle). Tests use it to prove that a no-op
// reconcile writes nothing.
func (k *Kernel) Writes() int {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	return k.m.writes
}

// failure is one armed FailNth rule.
type failure struct {
	op    string
	left  int
	errno syscall.Errno
}

// FailNth arms a failure: the n-th next call (1 = the next one) of the
// method named op on any handle of the machine fails with errno and changes
// nothing. op is a method name such as "LinkAdd" or "RouteReplace"
// (read-only methods such as "LinkByName" may be named too); "" counts
// every mutating method (the netlink writes and SetSysctl). Rules are
// independent; each fires once. n < 1 is treated as 1. errno is a
// syscall.Errno so that callers can pass unix.EIO (an alias on Linux) or, on
// systems where x/sys/unix has no errno, syscall.EIO or a syscall.Errno(n).
func (k *Kernel) FailNth(op string, n int, errno syscall.Errno) {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if n < 1 {
		n = 1
	}
	k.m.failures = append(k.m.failures, &failure{op: op, left: n, errno: errno})
}

// isMutating reports whether FailNth("") counts op and Writes records it.
func isMutating(op string) bool {
	switch op {
	case "LinkAdd", "LinkDel", "LinkSetUp", "LinkSetDown", "LinkSetMTU",
		"LinkSetHardwareAddr", "LinkSetAlias", "LinkSetName", "LinkSetMaster",
		"LinkSetNoMaster", "LinkSetNsFd", "AddrAdd", "AddrReplace", "AddrDel",
		"RouteAdd", "RouteReplace", "RouteDel", "NeighAdd", "NeighSet",
		"NeighAppend", "NeighDel", "SetSysctl":
		return true
	}
	return false
}

// begin is called with the lock held at the start of every method; it
// returns the injected error, if one fires.
func (m *machine) begin(op string) error {
	mut := isMutating(op)
	var fire error
	kept := m.failures[:0]
	for _, f := range m.failures {
		if f.op == op || (f.op == "" && mut) {
			f.left--
			if f.left == 0 {
				if fire == nil {
					fire = f.errno
				}
				continue
			}
		}
		kept = append(kept, f)
	}
	m.failures = kept
	return fire
}

// do runs a mutating method under the lock with failure injection and
// write accounting.
func (k *Kernel) do(op string, fn func() error) error {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if err := k.m.begin(op); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	k.m.writes++
	return nil
}

// read runs a read-only method under the lock with failure injection.
func (k *Kernel) read(op string, fn func() error) error {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if err := k.m.begin(op); err != nil {
		return err
	}
	return fn()
}

// nsByFd resolves a fake namespace descriptor.
func (m *machine) nsByFd(v any) (*namespace, error) {
	var fd int
	switch x := v.(type) {
	case netlink.NsFd:
		fd = int(x)
	case netlink.NsPid:
		return nil, abi.ENOTSUP // the fake has no processes
	default:
		return nil, abi.EINVAL
	}
	ns, ok := m.byFd[fd]
	if !ok {
		return nil, abi.EBADF
	}
	return ns, nil
}

// nsid returns the id ns uses for other, allocating the lowest free one
// like peernet2id_alloc.
func (ns *namespace) nsid(other *namespace) int {
	if id, ok := ns.nsids[other]; ok {
		return id
	}
	used := map[int]bool{}
	for _, id := range ns.nsids {
		used[id] = true
	}
	id := 0
	for used[id] {
		id++
	}
	ns.nsids[other] = id
	return id
}

// newMAC returns a deterministic locally administered unicast address.
func (m *machine) newMAC() net.HardwareAddr {
	n := m.nextMAC
	m.nextMAC++
	return net.HardwareAddr{0x02, 0x7a, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

func (ns *namespace) sortedLinks() []*link {
	ls := make([]*link, 0, len(ns.links))
	for _, l := range ns.links {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].index < ls[j].index })
	return ls
}

func (ns *namespace) linkByName(name string) *link {
	for _, l := range ns.links {
		if l.name == name {
			return l
		}
	}
	return nil
}
