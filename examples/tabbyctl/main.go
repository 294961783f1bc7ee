package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/datastore/bolt"
	"github.com/tabbynet/tabby/datastore/dsn"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/reflector"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	open := func(ctx context.Context, url string) (datastore.Store, error) {
		// Do not create a bolt file by looking at it.
		if spec, err := dsn.Parse(url); err == nil && spec.Kind == dsn.Bolt {
			if _, err := os.Stat(spec.Path); err != nil {
				return nil, fmt.Errorf("datastore %s: %w", url, err)
			}
		}
		return dsn.Open(ctx, url, nil)
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, open))
}

// opener opens the datastore named on the command line.
type opener func(ctx context.Context, url string) (datastore.Store, error)

const usage = `usage: tabbyctl [--datastore URL] [--timeout D] COMMAND

commands:
  ipam show [--blocks] [-o table|json]   pools (and blocks): total, allocated, free
  ipam check [--fix]                     consistency report (the store file too);
                                         exit 1 on problems; --fix repairs them
  ipam restore [--from FILE]             replace a corrupt bolt store with its
                                         backup (default: the file + ".bak")
  ipam release --ip ADDR | --handle H    free an address or a handle's addresses
  ipam release-host --host NODE          clean up after a node removed for good
  pools list [-o table|json]
  pools add --cidr CIDR [--name N] [--block-size 26] [--vxlan-mode Always]
            [--nat-outgoing=true] [--disabled]
  pools delete NAME
  peers [-o table|json]                  the reflector's announcements
  node withdraw NAME                     withdraw a node for good (peers drop its routes now)
  explain --ip POD [--to DEST] [--pod-netns PATH] [--netns PATH] [-o table|json]
                                         on a node: the pod's path, step by step, PASS/FAIL
`

// errUsage marks command-line mistakes (exit 2).
var errUsage = errors.New("usage")

type app struct {
	st     datastore.Store
	stdout io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) int {
	fs := flag.NewFlagSet("tabbyctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	url := fs.String("datastore", envOr("TABBY_DATASTORE", dsn.DefaultBoltURL), "datastore URL (env TABBY_DATASTORE)")
	timeout := fs.Duration("timeout", 30*time.Second, "overall deadline")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if len(rest) >= 2 && rest[0] == "ipam" && rest[1] == "restore" {
		// The store is not opened: it is the file being replaced.
		if err := ipamRestore(ctx, *url, rest[2:], stdout, stderr); err != nil {
			if errors.Is(err, errUsage) {
				fmt.Fprintf(stderr, "tabbyctl: %v\n\n%s", err, usage)
				return 2
			}
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "tabbyctl: %v\n", err)
			return 1
		}
		return 0
	}
	st, err := open(ctx, *url)
	if err != nil {
		fmt.Fprintf(stderr, "tabbyctl: %v\n", err)
		if errors.Is(err, datastore.ErrCorrupt) {
			fmt.Fprintln(stderr, "tabbyctl: the store is corrupt: stop the agent, run `tabbyctl ipam restore`, then `tabbyctl ipam check --fix`")
		}
		return 1
	}
	defer st.Close()
	a := &app{st: st, stdout: stdout}
	err = a.dispatch(ctx, rest, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "tabbyctl: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errProblems):
		return 1
	}
	fmt.Fprintf(stderr, "tabbyctl: %v\n", err)
	return 1
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (a *app) dispatch(ctx context.Context, args []string, stderr io.Writer) error {
	cmd := strings.Join(args[:min(2, len(args))], " ")
	sub := func(n int) []string { return args[min(n, len(args)):] }
	switch {
	case cmd == "ipam show":
		return a.ipamShow(ctx, sub(2), stderr)
	case cmd == "ipam check":
		return a.ipamCheck(ctx, sub(2), stderr)
	case cmd == "ipam release":
		return a.ipamRelease(ctx, sub(2), stderr)
	case cmd == "ipam release-host":
		return a.ipamReleaseHost(ctx, sub(2), stderr)
	case cmd == "pools list":
		return a.poolsList(ctx, sub(2), stderr)
	case cmd == "pools add":
		return a.poolsAdd(ctx, sub(2), stderr)
	case cmd == "pools delete":
		return a.poolsDelete(ctx, sub(2), stderr)
	case args[0] == "peers":
		return a.peers(ctx, sub(1), stderr)
	case cmd == "node withdraw":
		return a.nodeWithdraw(ctx, sub(2), stderr)
	case args[0] == "explain":
		return a.explainCmd(ctx, sub(1), stderr)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, strings.Join(args, " "))
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	// Every command with an -o flag accepts the same formats.
	if o := fs.Lookup("o"); o != nil {
		return checkOutput(o.Value.String())
	}
	return nil
}

func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("%w: -o %q: want table or json", errUsage, o)
	}
	return nil
}

func (a *app) ipam() (*ipam.IPAM, error) { return ipam.New(a.st, nil) }

// JSON of `ipam show`.
type showPool struct {
	Name      string      `json:"name"`
	CIDR      string      `json:"cidr"`
	Disabled  bool        `json:"disabled,omitempty"`
	Total     uint64      `json:"total"`
	Allocated int         `json:"allocated"`
	Free      uint64      `json:"free"`
	Blocks    []showBlock `json:"blocks,omitempty"`
}

type showBlock struct {
	CIDR      string `json:"cidr"`
	Affinity  string `json:"affinity"`
	Allocated int    `json:"allocated"`
	Free      int    `json:"free"`
}

type showOut struct {
	Pools []showPool `json:"pools"`
}

func poolSize(p netip.Prefix) uint64 {
	host := p.Addr().BitLen() - p.Bits()
	if host >= 64 {
		return 1<<63 - 1
	}
	return 1 << host
}

func (a *app) ipamShow(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("ipam show", stderr)
	blocks := fs.Bool("blocks", false, "show every block")
	out := outputFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	u, err := m.Usage(ctx)
	if err != nil {
		return err
	}
	res := showOut{Pools: []showPool{}}
	for _, p := range u.Pools {
		total := poolSize(p.CIDR)
		sp := showPool{Name: p.Pool, CIDR: p.CIDR.String(), Disabled: p.Disabled, Total: total, Allocated: p.InUse, Free: total - uint64(p.InUse)}
		if *blocks {
			sp.Blocks = []showBlock{}
			for _, b := range u.Blocks {
				if b.Pool != p.Pool {
					continue
				}
				aff := ""
				if b.Affinity != "" {
					aff = "host:" + b.Affinity
				}
				sp.Blocks = append(sp.Blocks, showBlock{CIDR: b.CIDR.String(), Affinity: aff, Allocated: b.InUse, Free: b.Capacity - b.InUse})
			}
		}
		res.Pools = append(res.Pools, sp)
	}
	if *out == "json" {
		return writeJSON(a.stdout, res)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tCIDR\tTOTAL\tALLOCATED\tFREE\tSTATE")
	for _, p := range res.Pools {
		state := "enabled"
		if p.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", p.Name, p.CIDR, p.Total, p.Allocated, p.Free, state)
	}
	if *blocks {
		fmt.Fprintln(tw, "\nBLOCK\tAFFINITY\tALLOCATED\tFREE\t\t")
		for _, p := range res.Pools {
			for _, b := range p.Blocks {
				aff := b.Affinity
				if aff == "" {
					aff = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t\t\n", b.CIDR, aff, b.Allocated, b.Free)
			}
		}
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

var errProblems = errors.New("problems found")

// storeChecker is a store that can verify its own file (bolt).
type storeChecker interface {
	Check(ctx context.Context) error
}

func (a *app) ipamCheck(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("ipam check", stderr)
	fix := fs.Bool("fix", false, "repair what is found (see ipam.Repair)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if sc, ok := a.st.(storeChecker); ok {
		if err := sc.Check(ctx); err != nil {
			fmt.Fprintf(a.stdout, "store: %v\n", err)
			fmt.Fprintln(stderr, "tabbyctl: ipam check: the store file is corrupt: stop the agent, run `tabbyctl ipam restore`, then `tabbyctl ipam check --fix`")
			return errProblems
		}
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	probs, err := m.Check(ctx, nil)
	if err != nil {
		return err
	}
	if len(probs) == 0 {
		fmt.Fprintln(a.stdout, "ok: no problems found")
		return nil
	}
	for _, p := range probs {
		fmt.Fprintln(a.stdout, p.String())
	}
	if !*fix {
		fmt.Fprintf(stderr, "tabbyctl: ipam check: %d problem(s) (--fix repairs them)\n", len(probs))
		return errProblems
	}
	res, err := m.Repair(ctx, probs)
	for _, p := range res.Fixed {
		fmt.Fprintf(a.stdout, "fixed: %s %s\n", p.Kind, p.Key)
	}
	for _, p := range res.Unfixed {
		fmt.Fprintf(a.stdout, "not fixed: %s %s: %s\n", p.Kind, p.Key, p.Detail)
	}
	if err != nil {
		return err
	}
	if len(res.Unfixed) > 0 {
		fmt.Fprintf(stderr, "tabbyctl: ipam check: %d problem(s) not fixed\n", len(res.Unfixed))
		return errProblems
	}
	return nil
}

// ipamRestore replaces the bolt store named by url with a backup.
func ipamRestore(ctx context.Context, url string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipam restore", stderr)
	from := fs.String("from", "", `snapshot to restore (default: the store file + ".bak")`)
	if err := parse(fs, args); err != nil {
		return err
	}
	spec, err := dsn.Parse(url)
	if err != nil {
		return err
	}
	if spec.Kind != dsn.Bolt {
		return fmt.Errorf("%w: ipam restore works on a bolt store (etcd has its own snapshots), not %s", errUsage, spec.Kind)
	}
	if *from == "" {
		*from = spec.Path + bolt.BackupSuffix
	}
	saved, err := bolt.Restore(ctx, spec.Path, *from, &spec.Bolt)
	if err != nil {
		return err
	}
	if saved != "" {
		fmt.Fprintf(stdout, "damaged store kept as %s\n", saved)
	}
	fmt.Fprintf(stdout, "restored %s from %s; allocations made after the snapshot are missing: run `tabbyctl ipam check --fix` and let GC run\n", spec.Path, *from)
	return nil
}

func (a *app) ipamRelease(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("ipam release", stderr)
	ip := fs.String("ip", "", "address to free")
	handle := fs.String("handle", "", "handle whose addresses to free")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*ip == "") == (*handle == "") {
		return fmt.Errorf("%w: ipam release needs exactly one of --ip and --handle", errUsage)
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	var rel []netip.Addr
	if *ip != "" {
		addr, err := netip.ParseAddr(*ip)
		if err != nil {
			return fmt.Errorf("%w: --ip: %v", errUsage, err)
		}
		rel, err = m.ReleaseIPs(ctx, ipam.Release{Addr: addr})
		if err != nil {
			return err
		}
		if len(rel) == 0 {
			return fmt.Errorf("%v is not allocated", addr)
		}
	} else {
		rel, err = m.ReleaseByHandle(ctx, *handle)
		if err != nil {
			return err
		}
		if len(rel) == 0 {
			return fmt.Errorf("handle %q holds no address", *handle)
		}
	}
	for _, r := range rel {
		fmt.Fprintf(a.stdout, "released %v\n", r)
	}
	return nil
}

func (a *app) ipamReleaseHost(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("ipam release-host", stderr)
	host := fs.String("host", "", "node removed from the cluster (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *host == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: ipam release-host needs --host NODE and nothing else", errUsage)
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	// An operator's one-off: also look for blocks the host's record lost.
	r, err := m.ReleaseHost(ctx, *host, ipam.ReleaseHostOptions{Scan: true})
	if err != nil {
		return err
	}
	if !r.Changed() {
		fmt.Fprintf(a.stdout, "host %s: nothing to release\n", *host)
		return nil
	}
	for _, t := range r.TunnelAddrs {
		fmt.Fprintf(a.stdout, "released tunnel address %v\n", t)
	}
	for _, b := range r.DeletedBlocks {
		fmt.Fprintf(a.stdout, "deleted empty block %v\n", b)
	}
	for _, b := range r.UnaffinedBlocks {
		fmt.Fprintf(a.stdout, "block %v no longer affine\n", b)
	}
	if r.RecordRemoved {
		fmt.Fprintf(a.stdout, "host %s removed\n", *host)
	}
	if r.Remaining > 0 {
		fmt.Fprintf(a.stdout, "%d address(es) still allocated in blocks no longer affine: release their handles (or let GC) to free the blocks\n", r.Remaining)
	}
	return nil
}

type poolOut struct {
	Name        string `json:"name"`
	CIDR        string `json:"cidr"`
	BlockSize   int    `json:"blockSize"`
	VXLANMode   string `json:"vxlanMode"`
	NATOutgoing bool   `json:"natOutgoing"`
	Disabled    bool   `json:"disabled"`
}

func (a *app) poolsList(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("pools list", stderr)
	out := outputFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	pools, err := m.ListPools(ctx)
	if err != nil {
		return err
	}
	res := []poolOut{}
	for _, p := range pools {
		res = append(res, poolOut{p.Name, p.CIDR.String(), p.BlockSize, p.VXLANMode.String(), p.NATOutgoing, p.Disabled})
	}
	if *out == "json" {
		return writeJSON(a.stdout, map[string]any{"pools": res})
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCIDR\tBLOCK\tVXLAN\tNAT\tDISABLED")
	for _, p := range res {
		fmt.Fprintf(tw, "%s\t%s\t/%d\t%s\t%v\t%v\n", p.Name, p.CIDR, p.BlockSize, p.VXLANMode, p.NATOutgoing, p.Disabled)
	}
	return tw.Flush()
}

func (a *app) poolsAdd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("pools add", stderr)
	name := fs.String("name", "", "pool name (default: derived from the CIDR, 10.244.0.0-16)")
	cidr := fs.String("cidr", "", "pool CIDR (required)")
	bs := fs.Int("block-size", ipam.DefaultBlockSize4, "block prefix length")
	mode := fs.String("vxlan-mode", "Always", "Always, CrossSubnet or Never")
	nat := fs.Bool("nat-outgoing", true, "masquerade traffic leaving the pools")
	disabled := fs.Bool("disabled", false, "create disabled")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := netip.ParsePrefix(*cidr)
	if err != nil {
		return fmt.Errorf("%w: --cidr: %v", errUsage, err)
	}
	vm, err := ipam.ParseVXLANMode(*mode)
	if err != nil {
		return fmt.Errorf("%w: --vxlan-mode: %v", errUsage, err)
	}
	if *name == "" {
		*name = strings.ReplaceAll(p.Addr().String(), ":", "-") + fmt.Sprintf("-%d", p.Bits())
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	if err := m.CreatePool(ctx, ipam.Pool{Name: *name, CIDR: p, BlockSize: *bs, VXLANMode: vm, NATOutgoing: *nat, Disabled: *disabled}); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "pool %s %v created\n", *name, p)
	return nil
}

func (a *app) poolsDelete(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("pools delete", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: pools delete takes one pool name", errUsage)
	}
	m, err := a.ipam()
	if err != nil {
		return err
	}
	if err := m.DeletePool(ctx, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "pool %s deleted\n", fs.Arg(0))
	return nil
}

type peerOut struct {
	Node          string   `json:"node"`
	NodeIP        string   `json:"nodeIP"`
	TunnelIP      string   `json:"tunnelIP"`
	TunnelMAC     string   `json:"tunnelMAC"`
	Blocks        []string `json:"blocks"`
	Addrs         []string `json:"addrs,omitempty"`
	LastHeartbeat string   `json:"lastHeartbeat,omitempty"`
	HoldTime      string   `json:"holdTime,omitempty"`
}

// heartbeat is the part of the reflector's stored record that List does not
// return: the writer's time of the last heartbeat and its hold time.
type heartbeat struct {
	Node       string    `json:"node"`
	HoldMillis int64     `json:"holdMillis"`
	Time       time.Time `json:"time"`
}

func (a *app) peers(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("peers", stderr)
	out := outputFlag(fs)
	prefix := fs.String("prefix", reflector.DefaultPrefix, "announcement key prefix")
	if err := parse(fs, args); err != nil {
		return err
	}
	r, err := reflector.New(a.st, &reflector.Config{Prefix: *prefix})
	if err != nil {
		return err
	}
	anns, _, err := r.List(ctx)
	if err != nil {
		return err
	}
	kvs, _, err := a.st.List(ctx, *prefix)
	if err != nil {
		return err
	}
	beats := map[string]heartbeat{}
	for _, kv := range kvs {
		var h heartbeat
		if json.Unmarshal(kv.Value, &h) == nil && h.Node != "" {
			beats[h.Node] = h
		}
	}
	res := []peerOut{}
	for _, an := range anns {
		p := peerOut{Node: an.Node, NodeIP: an.NodeIP.String(), TunnelIP: an.TunnelIP.String(), TunnelMAC: an.TunnelMAC.String(), Blocks: []string{}}
		for _, b := range an.Blocks {
			p.Blocks = append(p.Blocks, b.String())
		}
		for _, x := range an.Addrs {
			p.Addrs = append(p.Addrs, x.String())
		}
		if h, ok := beats[an.Node]; ok {
			if !h.Time.IsZero() {
				p.LastHeartbeat = h.Time.UTC().Format(time.RFC3339Nano)
			}
			if h.HoldMillis > 0 {
				p.HoldTime = (time.Duration(h.HoldMillis) * time.Millisecond).String()
			}
		}
		res = append(res, p)
	}
	slices.SortFunc(res, func(x, y peerOut) int { return strings.Compare(x.Node, y.Node) })
	if *out == "json" {
		return writeJSON(a.stdout, map[string]any{"peers": res})
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNODE IP\tTUNNEL IP\tTUNNEL MAC\tBLOCKS\tLAST HEARTBEAT")
	for _, p := range res {
		hb := p.LastHeartbeat
		if hb == "" {
			hb = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Node, p.NodeIP, p.TunnelIP, p.TunnelMAC, strings.Join(p.Blocks, ","), hb)
	}
	return tw.Flush()
}
