package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/veth"
)

// Delegator runs another IPAM plugin, as the CNI spec says (the
// configuration on stdin, the CNI_* variables inherited). The default does
// what package invoke does (delegate.go).
type Delegator interface {
	Add(ctx context.Context, plugin string, conf []byte) (types.Result, error)
	Check(ctx context.Context, plugin string, conf []byte) error
	Del(ctx context.Context, plugin string, conf []byte) error
	GC(ctx context.Context, plugin string, conf []byte) error
	Status(ctx context.Context, plugin string, conf []byte) error
}

// Env is everything the plugins take from the outside world: the kernel,
// the datastore, delegated plugins, the host name and stderr. The zero
// value of every field means the real thing, so a binary passes Env{} with
// only OpenStore set, and tests pass netlinktest and a memory store.
type Env struct {
	// Host is the host (current) network namespace; nil: a netlink
	// handle made per command in the current namespace.
	Host veth.Netlink
	// OpenNetNS opens pod namespaces; nil: veth.OpenNetNS.
	OpenNetNS veth.OpenFunc
	// Sysctl of the host namespace; nil: veth's default.
	Sysctl veth.Sysctl
	// OpenStore opens the datastore named by the configuration. Required.
	OpenStore func(ctx context.Context, url string) (datastore.Store, error)
	// Delegate runs non-tabby IPAM plugins; nil: the plugin on CNI_PATH,
	// as package invoke runs it.
	Delegate Delegator
	// Hostname is the node name of last resort; nil: os.Hostname.
	Hostname func() (string, error)
	// Stderr receives logs when the configuration names no log file; nil:
	// os.Stderr.
	Stderr io.Writer
	// Timeout bounds one command (default 60s).
	Timeout time.Duration
	// HostLock serialises the IPAM operations of the plugins of one host
	// (see FileLock, the default); it returns the unlock function.
	HostLock func(ctx context.Context, stateDir string) (func(), error)
	// CheckNetNS vets CNI_NETNS before ADD or CHECK does anything else:
	// an error wrapping ErrHostNetNS or veth.ErrInvalidNetNS refuses the
	// call. nil: CheckNetNS (the real kernel's files) when OpenNetNS is
	// nil, else only that OpenNetNS opens the path (a fake kernel).
	CheckNetNS func(path string) error
	// NoEarlyPlumbing makes ADD plumb the pod only after IPAM has
	// committed its addresses, rather than while it commits (tests).
	NoEarlyPlumbing bool
	// Hook, if set, is called by ADD at named points ("assigned": the
	// address is allocated, "plumbed": the veth pair is made), for tests
	// that kill the plugin there.
	Hook func(point string)
}

// Plugin implements the tabby CNI plugin's commands. It holds no state
// between calls and is safe for concurrent use as long as its Env is.
type Plugin struct {
	env Env
}

// New returns a Plugin on env.
func New(env Env) *Plugin {
	if env.Delegate == nil {
		env.Delegate = execDelegator{}
	}
	if env.Hostname == nil {
		env.Hostname = os.Hostname
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Timeout == 0 {
		env.Timeout = 60 * time.Second
	}
	if env.HostLock == nil {
		env.HostLock = FileLock
	}
	if env.CheckNetNS == nil {
		env.CheckNetNS = CheckNetNS
		if open := env.OpenNetNS; open != nil {
			// A fake kernel's namespaces have no files to compare: the
			// path must open as one of its namespaces.
			env.CheckNetNS = func(path string) error {
				ns, err := open(path)
				if err != nil {
					return fmt.Errorf("%w: %s: %w", veth.ErrInvalidNetNS, path, err)
				}
				ns.Close()
				return nil
			}
		}
	}
	return &Plugin{env: env}
}

// call is the state of one command.
type call struct {
	p      *Plugin
	args   *skel.CmdArgs
	conf   *NetConf
	pod    PodArgs
	key    string
	handle string
	log    *slog.Logger
	host   veth.Netlink
	st     datastore.Store
	start  time.Time
	closer []func()
}

func (c *call) close() {
	for i := len(c.closer) - 1; i >= 0; i-- {
		c.closer[i]()
	}
}

func (p *Plugin) begin(args *skel.CmdArgs, cmd string, standalone bool) (*call, error) {
	if err := ValidateCmdArgs(args); err != nil {
		return nil, err
	}
	conf, err := LoadConf(args.StdinData, standalone, p.env.Hostname)
	if err != nil {
		return nil, err
	}
	c := &call{p: p, args: args, conf: conf, start: time.Now()}
	var w io.Writer = p.env.Stderr
	if conf.LogFile != "" {
		f, err := os.OpenFile(conf.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, confErr("logFile", "%v", err)
		}
		c.closer = append(c.closer, func() { f.Close() })
		w = f
	}
	c.log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: conf.Level})).With(
		"cmd", cmd, "network", conf.Name, "container", args.ContainerID, "ifname", args.IfName)
	c.pod, err = ParseArgs(args.Args)
	if err != nil {
		c.close()
		return nil, err
	}
	c.key = c.pod.WorkloadKey(args.ContainerID)
	c.handle = Handle(conf.Name, args.ContainerID, args.IfName)
	return c, nil
}

func (c *call) store(ctx context.Context) (datastore.Store, error) {
	if c.p.env.OpenStore == nil {
		return nil, errors.New("cni: no datastore opener")
	}
	st, err := c.p.env.OpenStore(ctx, c.conf.Datastore)
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", c.conf.Datastore, err)
	}
	c.closer = append(c.closer, func() { st.Close() })
	c.st = st
	return st, nil
}

// holder is a store that can be held for a few operations (bolt: one file
// lock, open and validation for all of them instead of one each).
type holder interface {
	Hold(ctx context.Context, fn func() error) error
}

// held runs fn, which uses the call's store, with the store held if it can
// be.
func (c *call) held(ctx context.Context, fn func() error) error {
	if h, ok := c.st.(holder); ok {
		return h.Hold(ctx, fn)
	}
	return fn()
}

func (c *call) ipam(ctx context.Context) (*ipam.IPAM, error) {
	st, err := c.store(ctx)
	if err != nil {
		return nil, err
	}
	return ipam.New(st, &ipam.Config{Logger: c.log})
}

func (c *call) plumber() (*veth.Plumber, error) {
	host := c.p.env.Host
	if host == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("%w: netlink: %w", errKernel, err)
		}
		c.closer = append(c.closer, h.Close)
		host = h
	}
	c.host = host
	return veth.New(host, &veth.Config{
		MTU:    c.conf.MTU,
		ARP:    c.conf.ARP,
		Open:   c.p.env.OpenNetNS,
		Sysctl: c.p.env.Sysctl,
		Logger: c.log,
	})
}

// lock takes the host IPAM lock; the returned function releases it (and
// is safe to call twice).
func (c *call) lock(ctx context.Context) (func(), error) {
	unlock, err := c.p.env.HostLock(ctx, c.conf.StateDir)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(unlock) }, nil
}

func (c *call) hook(point string) {
	c.log.Debug(point, "elapsed", time.Since(c.start))
	if c.p.env.Hook != nil {
		c.p.env.Hook(point)
	}
}

func (c *call) hostLink() veth.Netlink { return c.host }

func (p *Plugin) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), p.env.Timeout)
}

// attrs are stored with each address.
func (c *call) attrs() map[string]string {
	a := map[string]string{"node": c.conf.NodeName, "container": c.args.ContainerID,
		"network": c.conf.Name, "ifname": c.args.IfName}
	if c.pod.Namespace != "" {
		a["namespace"] = c.pod.Namespace
	}
	if c.pod.Name != "" {
		a["pod"] = c.pod.Name
	}
	return a
}

// allocation is what an ADD got from IPAM, with its undo.
type allocation struct {
	addrs   []netip.Prefix // single host addresses
	gateway netip.Addr     // only from delegated IPAM, informational
	routes  []*types.Route
	dns     types.DNS
	undo    func()
	// early is the veth plumbing started while IPAM committed (nil: none).
	early *earlySetup
}

// earlySetup is a veth.Setup run on its own goroutine for addresses IPAM
// had chosen but not yet committed.
type earlySetup struct {
	addrs []netip.Prefix
	done  chan struct{}
	res   *veth.Result
	err   error
}

// wait returns Setup's outcome.
func (e *earlySetup) wait() (*veth.Result, error) {
	<-e.done
	return e.res, e.err
}

// plumbEarly reports whether ADD may plumb the pod while IPAM commits the
// assignment (the commit of a bolt store is mostly fsync, which the veth
// plumbing can overlap): only a fresh ADD, whose host interface does not
// exist yet, so that undoing the early plumbing removes only what it made.
func (c *call) plumbEarly(pl *veth.Plumber) bool {
	if pl == nil || c.host == nil || c.p.env.NoEarlyPlumbing {
		return false
	}
	_, err := c.host.LinkByName(pl.HostIfName(c.key))
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}

func prefixes(as []ipam.Assigned) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(as))
	for _, x := range as {
		out = append(out, netip.PrefixFrom(x.Addr, x.Addr.BitLen()))
	}
	return out
}

// assign runs in-process IPAM. With pl set, it may start plumbing the pod
// (allocation.early) with the addresses IPAM chose, while IPAM commits
// them; if the assignment then fails, that plumbing is undone before
// assign returns.
func (c *call) assign(ctx context.Context, m *ipam.IPAM, pl *veth.Plumber) (*allocation, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var (
		held  []netip.Addr
		as    []ipam.Assigned
		early *earlySetup
	)
	// One hold of the store for the reads and the commit (with bolt: one
	// open of the file instead of one per operation).
	err = c.held(ctx, func() error {
		var err error
		held, err = m.HandleAddrs(ctx, c.handle)
		if err != nil {
			return fmt.Errorf("ipam: handle %s: %w", c.handle, err)
		}
		req, err := EnsurePools(ctx, m, c.conf.IPAM.PoolPrefixes, c.conf.IPAM.BlockSize, c.conf.IPAM.BlockSize6)
		if err != nil {
			return err
		}
		c.log.Debug("pools", "elapsed", time.Since(c.start))
		args := ipam.AutoAssignArgs{
			Handle: c.handle, Host: c.conf.NodeName, Num4: req.Num4, Num6: req.Num6, Attrs: c.attrs(), Pools: req.Pools,
		}
		if len(held) == 0 && c.plumbEarly(pl) {
			args.BeforeCommit = func(as []ipam.Assigned) {
				if early != nil {
					return // a retry after a conflict: ADD plumbs again if the addresses changed
				}
				early = &earlySetup{addrs: prefixes(as), done: make(chan struct{})}
				c.log.Debug("plumbing while committing", "elapsed", time.Since(c.start))
				go func() {
					defer close(early.done)
					early.res, early.err = pl.Setup(ctx, c.vethPod(early.addrs))
					if early.err == nil {
						c.label(early.res.HostIfName)
					}
					c.log.Debug("plumbed early", "elapsed", time.Since(c.start), "err", early.err)
				}()
			}
		}
		as, err = m.AutoAssign(ctx, args)
		if err != nil {
			return fmt.Errorf("ipam: assign for %s on %s: %w", c.handle, c.conf.NodeName, err)
		}
		c.log.Debug("committed", "elapsed", time.Since(c.start))
		return nil
	})
	if err != nil {
		if early != nil {
			if _, serr := early.wait(); serr == nil {
				// Nothing half-made: the pod is unplumbed again.
				tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				if terr := pl.Teardown(tctx, c.key); terr != nil {
					err = errors.Join(err, fmt.Errorf("%w: undo the plumbing: %w", errKernel, terr))
				}
			}
		}
		return nil, err
	}
	a := &allocation{undo: func() {}, addrs: prefixes(as), early: early}
	if len(held) == 0 {
		a.undo = func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if unlock, err := c.lock(ctx); err == nil {
				defer unlock()
			}
			if _, err := m.ReleaseByHandle(ctx, c.handle); err != nil {
				c.log.Error("release after failed ADD", "handle", c.handle, "err", err)
			}
		}
	}
	return a, nil
}

// delegateAdd runs another IPAM plugin.
func (c *call) delegateAdd(ctx context.Context) (*allocation, error) {
	d := c.p.env.Delegate
	r, err := d.Add(ctx, c.conf.IPAM.Type, c.args.StdinData)
	if err != nil {
		return nil, err
	}
	a := &allocation{undo: func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := d.Del(ctx, c.conf.IPAM.Type, c.args.StdinData); err != nil {
			c.log.Error("delegated IPAM DEL after failed ADD", "plugin", c.conf.IPAM.Type, "err", err)
		}
	}}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		a.undo()
		return nil, fmt.Errorf("ipam %s: result: %w", c.conf.IPAM.Type, err)
	}
	for _, ip := range res.IPs {
		addr, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		a.addrs = append(a.addrs, netip.PrefixFrom(addr, addr.BitLen()))
	}
	if len(a.addrs) == 0 {
		a.undo()
		return nil, confErr("ipam", "plugin %s returned no address", c.conf.IPAM.Type)
	}
	a.dns = res.DNS
	return a, nil
}

// Add is CNI ADD: an address from IPAM (in-process or delegated), then the
// veth pair. Any failure undoes both. A repeated ADD returns the same
// result.
func (p *Plugin) Add(args *skel.CmdArgs) (types.Result, error) {
	ctx, cancel := p.ctx()
	defer cancel()
	c, err := p.begin(args, "ADD", false)
	if err != nil {
		return nil, err
	}
	defer c.close()
	if args.Netns == "" {
		return nil, &EnvError{Var: "CNI_NETNS", Reason: "missing"}
	}
	// Before any allocation or write: a CNI_NETNS that is the host's own
	// namespace would get the "pod" end, its address and a default route.
	if err := p.env.CheckNetNS(args.Netns); err != nil {
		return nil, err
	}
	pl, err := c.plumber()
	if err != nil {
		return nil, err
	}
	var a *allocation
	if c.conf.IPAM.Type == IPAMType {
		m, err := c.ipam(ctx)
		if err != nil {
			return nil, err
		}
		a, err = c.assign(ctx, m, pl)
		if err != nil {
			return nil, err
		}
	} else {
		a, err = c.delegateAdd(ctx)
		if err != nil {
			return nil, err
		}
	}
	var vr *veth.Result
	labelled := false
	if a.early != nil {
		vr, err = a.early.wait()
		labelled = err == nil
		if !slices.Equal(a.early.addrs, a.addrs) {
			// IPAM started over after a conflict: plumbed with addresses
			// that are not ours. Setup below replaces the interface.
			vr, err, labelled = nil, nil, false
		}
	}
	c.hook("assigned")
	if vr == nil && err == nil {
		vr, err = pl.Setup(ctx, c.vethPod(a.addrs))
	}
	if err != nil {
		a.undo()
		if !errors.Is(err, veth.ErrInvalid) && !errors.Is(err, veth.ErrConflict) {
			err = fmt.Errorf("%w: %w", errKernel, err)
		}
		return nil, err
	}
	if !labelled { // the early plumbing labelled it while IPAM committed
		c.label(vr.HostIfName)
	}
	c.hook("plumbed")
	c.log.Info("added", "key", c.key, "host", vr.HostIfName, "addrs", a.addrs)
	res := vethResult(c.conf.CNIVersion, vr)
	res.DNS = a.dns
	return res, nil
}

// vethPod is the pod ADD plumbs, with addrs.
func (c *call) vethPod(addrs []netip.Prefix) veth.Pod {
	return veth.Pod{Key: c.key, NetNS: c.args.Netns, IfName: c.args.IfName, Addrs: addrs, MTU: c.conf.MTU}
}

func vethResult(version string, vr *veth.Result) *types100.Result {
	res := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			{Name: vr.HostIfName, Mac: vr.HostMAC.String()},
			{Name: vr.PodIfName, Mac: vr.PodMAC.String(), Sandbox: vr.Sandbox, Mtu: vr.MTU},
		},
	}
	if !supportsIfaceMTU(version) {
		res.Interfaces[1].Mtu = 0
	}
	// One default route per family, via that family's gateway
	// (169.254.1.1; the host end's link-local address for IPv6), IPv4
	// first as veth orders the addresses.
	seen := map[bool]bool{}
	for _, ip := range vr.IPs {
		a := ip.Address
		res.IPs = append(res.IPs, &types100.IPConfig{
			Interface: types100.Int(1),
			Address:   net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())},
			Gateway:   ip.Gateway.AsSlice(),
		})
		if v6 := a.Addr().Is6(); !seen[v6] {
			seen[v6] = true
			any := netip.IPv4Unspecified()
			if v6 {
				any = netip.IPv6Unspecified()
			}
			res.Routes = append(res.Routes, &types.Route{
				Dst: net.IPNet{IP: any.AsSlice(), Mask: net.CIDRMask(0, any.BitLen())}, GW: ip.Gateway.AsSlice()})
		}
	}
	slices.SortStableFunc(res.Routes, func(a, b *types.Route) int { return len(a.Dst.IP) - len(b.Dst.IP) })
	return res
}

// defaultRoute reports whether r is a default route tabby makes: 0.0.0.0/0
// via 169.254.1.1 or ::/0 via the host end's link-local address.
func defaultRoute(r *types.Route, hostMAC net.HardwareAddr) bool {
	gw, _ := netip.AddrFromSlice(r.GW)
	gw = gw.Unmap()
	ones, bits := r.Dst.Mask.Size()
	if ones != 0 || !r.Dst.IP.IsUnspecified() {
		return false
	}
	if bits == 128 && r.Dst.IP.To4() == nil {
		return gw == veth.LinkLocal(hostMAC)
	}
	return gw == veth.Gateway4()
}

func supportsIfaceMTU(v string) bool { return v == "1.1.0" }

// Del is CNI DEL: remove the veth pair, then release the addresses. It
// succeeds when there is nothing left (no namespace, no interface, unknown
// container, second DEL).
func (p *Plugin) Del(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	c, err := p.begin(args, "DEL", false)
	if err != nil {
		return err
	}
	defer c.close()
	pl, err := c.plumber()
	if err != nil {
		return err
	}
	prev, _ := c.prevResult() // DEL carries it from 0.4.0 on; optional
	if c.conf.IPAM.Type != IPAMType {
		if err := c.teardown(ctx, pl, c.findAttachment(ctx, nil, pl, prev)); err != nil {
			return fmt.Errorf("%w: %w", errKernel, err)
		}
		return p.env.Delegate.Del(ctx, c.conf.IPAM.Type, args.StdinData)
	}
	m, err := c.ipam(ctx)
	if err != nil {
		// Still remove the interface; the runtime retries DEL for the
		// address once the store is back.
		if terr := c.teardown(ctx, pl, c.findAttachment(ctx, nil, pl, prev)); terr != nil {
			c.log.Warn("teardown", "err", terr)
		}
		return err
	}
	att := c.findAttachment(ctx, m, pl, prev)
	if c.ownsInterface(ctx, m, att) {
		if err := c.teardown(ctx, pl, att); err != nil {
			return fmt.Errorf("%w: %w", errKernel, err)
		}
	}
	c.log.Debug("torn down", "elapsed", time.Since(c.start))
	rel, err := c.release(ctx, m)
	if err != nil {
		return err
	}
	c.log.Info("deleted", "key", c.key, "released", rel, "elapsed", time.Since(c.start))
	return nil
}

// ownsInterface guards against a late DEL of an old sandbox removing the
// interface of a pod recreated under the same namespace/name: the host
// interface is this attachment's unless it routes only addresses that are
// allocated to other handles.
//
// It decides under the host IPAM lock: an ADD plumbs a fresh pod while its
// assignment commits (earlySetup), under that lock, so an interface whose
// addresses are not allocated yet is never seen here half-made.
func (c *call) ownsInterface(ctx context.Context, m *ipam.IPAM, att attachment) bool {
	host := c.hostLink()
	if host == nil || att.key == c.args.ContainerID {
		return true
	}
	if unlock, err := c.lock(ctx); err == nil {
		defer unlock()
	}
	lk, err := host.LinkByName(att.name)
	if err != nil {
		return true
	}
	routes, err := host.RouteList(lk, familyV4)
	if err != nil {
		return true
	}
	others := 0
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		al, found, err := m.AddrAllocation(ctx, a.Unmap())
		if err != nil || !found {
			continue
		}
		if al.Handle == c.handle {
			return true
		}
		others++
	}
	if others > 0 {
		c.log.Warn("host interface belongs to another sandbox of the pod; not removing it", "key", att.key, "host", att.name)
		return false
	}
	return true
}

// Check is CNI CHECK: the addresses held in IPAM, the veth pair, the
// addresses and the routes must be what prevResult says.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	c, err := p.begin(args, "CHECK", false)
	if err != nil {
		return err
	}
	defer c.close()
	prev, err := c.prevResult()
	if err != nil {
		return err
	}
	if err := p.env.CheckNetNS(args.Netns); err != nil {
		return err
	}
	pl, err := c.plumber()
	if err != nil {
		return err
	}
	var m *ipam.IPAM
	if c.conf.IPAM.Type == IPAMType {
		if m, err = c.ipam(ctx); err != nil {
			return err
		}
	}
	// The attachment as ADD made it, whatever this call's CNI_ARGS say.
	att := c.findAttachment(ctx, m, pl, prev)
	if att.key == "" {
		return &checkError{fmt.Sprintf("host interface %s does not say which workload it is (no alias %s...)", att.name, aliasPrefix)}
	}
	// Interfaces.
	hostName := att.name
	var podIdx = -1
	for i, ifc := range prev.Interfaces {
		if ifc.Sandbox != "" && ifc.Name == args.IfName {
			podIdx = i
		}
	}
	if podIdx < 0 {
		return &checkError{fmt.Sprintf("prevResult has no interface %s in a sandbox", args.IfName)}
	}
	if !slices.ContainsFunc(prev.Interfaces, func(i *types100.Interface) bool { return i.Sandbox == "" && i.Name == hostName }) {
		return &checkError{fmt.Sprintf("prevResult has no host interface %s", hostName)}
	}
	if s := prev.Interfaces[podIdx].Sandbox; s != args.Netns {
		return &checkError{fmt.Sprintf("interface %s: sandbox %s, want %s", args.IfName, s, args.Netns)}
	}
	var addrs []netip.Prefix
	for _, ip := range prev.IPs {
		if ip.Interface != nil && *ip.Interface != podIdx {
			continue
		}
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			return &checkError{fmt.Sprintf("prevResult address %v is invalid", ip.Address)}
		}
		a = a.Unmap()
		if c.conf.IPAM.Type == IPAMType {
			if ones, _ := ip.Address.Mask.Size(); ones != a.BitLen() {
				return &checkError{fmt.Sprintf("address %v: prefix length %d, want %d", ip.Address.String(), ones, a.BitLen())}
			}
		}
		addrs = append(addrs, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(addrs) == 0 {
		return &checkError{"prevResult has no address on " + args.IfName}
	}
	for _, r := range prev.Routes {
		if !defaultRoute(r, veth.DefaultHostMAC()) {
			return &checkError{fmt.Sprintf("route %v via %v is not one tabby makes (default via %v or %v)",
				r.Dst.String(), r.GW, veth.Gateway4(), veth.LinkLocal(veth.DefaultHostMAC()))}
		}
	}
	// IPAM.
	if m != nil {
		held, err := m.HandleAddrs(ctx, c.handle)
		if err != nil {
			return fmt.Errorf("ipam: handle %s: %w", c.handle, err)
		}
		want := make([]netip.Addr, len(addrs))
		for i, a := range addrs {
			want[i] = a.Addr()
		}
		slices.SortFunc(held, netip.Addr.Compare)
		slices.SortFunc(want, netip.Addr.Compare)
		if !slices.Equal(held, want) {
			return &checkError{fmt.Sprintf("ipam: handle %s holds %v, prevResult has %v", c.handle, held, want)}
		}
	} else if err := p.env.Delegate.Check(ctx, c.conf.IPAM.Type, args.StdinData); err != nil {
		return err
	}
	// Kernel.
	err = pl.Check(ctx, veth.Pod{Key: att.key, NetNS: args.Netns, IfName: args.IfName, Addrs: addrs, MTU: c.conf.MTU})
	if err != nil && !errors.Is(err, veth.ErrInvalid) && !errors.Is(err, veth.ErrMismatch) {
		err = fmt.Errorf("%w: %w", errKernel, err)
	}
	return err
}

func (c *call) prevResult() (*types100.Result, error) {
	if len(c.conf.RawPrev) == 0 || string(c.conf.RawPrev) == "null" {
		return nil, confErr("prevResult", "%v", errNoPrevResult)
	}
	r, err := types100.NewResult(c.conf.RawPrev)
	if err != nil {
		// Older result versions: decode with the configuration's version.
		pc := &types.PluginConf{CNIVersion: c.conf.CNIVersion}
		if err2 := decodePrev(pc, c.conf.RawPrev); err2 != nil {
			return nil, confErr("prevResult", "%v", err)
		}
		r = pc.PrevResult
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, confErr("prevResult", "%v", err)
	}
	return res, nil
}

// GC is CNI GC: every allocation of this network on this node whose
// attachment is not in cni.dev/valid-attachments is released, and its host
// interface removed (unless a valid attachment uses the same workload key).
// It keeps going past errors and reports them all.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	c, err := p.begin(args, "GC", false)
	if err != nil {
		return err
	}
	defer c.close()
	if c.conf.IPAM.Type != IPAMType {
		// The delegated IPAM collects its own garbage; our interfaces
		// are keyed by pods we cannot see without IPAM records.
		return p.env.Delegate.GC(ctx, c.conf.IPAM.Type, args.StdinData)
	}
	pl, err := c.plumber()
	if err != nil {
		return err
	}
	m, err := c.ipam(ctx)
	if err != nil {
		return err
	}
	return c.gc(ctx, m, pl)
}

func (c *call) gc(ctx context.Context, m *ipam.IPAM, pl *veth.Plumber) error {
	if !c.conf.HasAttachments {
		// libcni sends no list when its caller gave none (cnitool gc):
		// nothing is valid.
		c.log.Warn("GC without cni.dev/valid-attachments: every attachment of the network on this node is stale")
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	valid := map[string]bool{}
	for _, a := range c.conf.Attachments() {
		valid[Handle(c.conf.Name, a.ContainerID, a.IfName)] = true
	}
	allocs, err := m.Allocations(ctx)
	if err != nil {
		return fmt.Errorf("ipam: list allocations: %w", err)
	}
	stale := map[string]map[string]string{} // handle -> attrs
	inUse := map[string]bool{}              // workload keys of valid attachments
	for _, a := range allocs {
		// The network attribute, not the handle's prefix: network "a"
		// must not collect "a.b.<container>.<ifname>" of network "a.b".
		if a.Attrs["network"] != c.conf.Name || a.Handle != Handle(c.conf.Name, a.Attrs["container"], a.Attrs["ifname"]) {
			continue
		}
		if valid[a.Handle] {
			inUse[keyFromAttrs(a.Attrs)] = true
			continue
		}
		if a.Host != c.conf.NodeName {
			continue
		}
		stale[a.Handle] = a.Attrs
	}
	var errs []error
	handles := make([]string, 0, len(stale))
	for h := range stale {
		handles = append(handles, h)
	}
	slices.Sort(handles)
	for _, h := range handles {
		if key := keyFromAttrs(stale[h]); key != "" && !inUse[key] && pl != nil {
			if err := pl.Teardown(ctx, key); err != nil {
				errs = append(errs, fmt.Errorf("teardown %s: %w", key, err))
			}
		}
		rel, err := m.ReleaseByHandle(ctx, h)
		if err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", h, err))
			continue
		}
		c.log.Info("gc released", "handle", h, "addrs", rel)
	}
	if pl != nil {
		errs = append(errs, c.gcInterfaces(ctx, m, pl)...)
	}
	if len(errs) > 0 {
		return &gcError{errors.Join(errs...)}
	}
	return nil
}

// release frees the handle under the host lock.
func (c *call) release(ctx context.Context, m *ipam.IPAM) ([]netip.Addr, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var rel []netip.Addr
	err = c.held(ctx, func() error {
		rel, err = m.ReleaseByHandle(ctx, c.handle)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ipam: release %s: %w", c.handle, err)
	}
	return rel, nil
}

func keyFromAttrs(a map[string]string) string {
	if a["namespace"] != "" && a["pod"] != "" {
		return veth.WorkloadKey(a["namespace"], a["pod"])
	}
	return a["container"]
}

// Status is CNI STATUS: ready when the datastore answers; code 106
// (CodeCorruptStore) when it answers that it is corrupt, code 50
// otherwise.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	return p.status(args, false)
}

func (p *Plugin) status(args *skel.CmdArgs, standalone bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), min(p.env.Timeout, 10*time.Second))
	defer cancel()
	c, err := p.begin(args, "STATUS", standalone)
	if err != nil {
		return err
	}
	defer c.close()
	if c.conf.IPAM.Type != IPAMType {
		return p.env.Delegate.Status(ctx, c.conf.IPAM.Type, args.StdinData)
	}
	m, err := c.ipam(ctx)
	if err == nil {
		_, err = m.ListPools(ctx)
	}
	if err != nil {
		if te := ToError(err); te.Code == CodeCorruptStore {
			return types.NewError(CodeCorruptStore, "datastore corrupt", err.Error())
		}
		return types.NewError(CodeNotAvailable, "datastore not available", err.Error())
	}
	return nil
}

func decodePrev(pc *types.PluginConf, raw []byte) error {
	if err := json.Unmarshal(raw, &pc.RawPrevResult); err != nil {
		return err
	}
	return version.ParsePrevResult(pc)
}
