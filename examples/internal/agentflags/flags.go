// Package agentflags is tabby-agent's command line: its flags, the --config
// file and their defaults, shared with the Kubernetes manifests' test.
package agentflags

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tabbynet/tabby/node"
)

// Defaults of the agent's files.
const (
	DefaultStateDir   = "/var/lib/tabby"
	DefaultSysctlRoot = "/proc/sys"
)

// DefaultGCPercent is the agent's Go garbage collection target. Its heap
// is mostly the peers it holds and the garbage of each resync (a listing of
// every route, neighbour and FDB entry of the VXLAN device); at 40 the
// process stays within 1.4x of the live heap instead of 2x, for a few more
// collections (Calico's Felix has the same default, goGCThreshold).
const DefaultGCPercent = 40

// DefaultDatastore is the one-host bolt store in the default state
// directory.
const DefaultDatastore = "bolt:///var/lib/tabby/tabby.db"

// Flags are tabby-agent's command-line flags (issue #8, plus --config and
// --sysctl-root). A plain value.
type Flags struct {
	Config          string
	Node            string
	NodeIP          string
	NodeIPv6        string
	BlockSize6      int
	Uplink          string
	Datastore       string
	EtcdCA          string
	EtcdCert        string
	EtcdKey         string
	Pools           poolList
	BlockSize       int
	VXLANMode       string
	NATOutgoing     bool
	ProxyARP        string
	HoldTime        time.Duration
	ResyncInterval  time.Duration
	StateDir        string
	SysctlRoot      string
	Listen          string
	GracefulRestart bool
	WithdrawOnStop  bool
	CNIBinDir       string
	CNIConfDir      string
	LogLevel        string
	StartTimeout    time.Duration
	GCPercent       int
}

type poolList []netip.Prefix

func (p *poolList) String() string {
	if p == nil {
		return ""
	}
	var s []string
	for _, x := range *p {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

// Set accepts a comma-separated list; the flag may be repeated.
func (p *poolList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		x, err := netip.ParsePrefix(f)
		if err != nil || x.Masked() != x || !x.Addr().Is4() {
			return fmt.Errorf("pool %q: want an IPv4 CIDR without host bits (10.244.0.0/16)", f)
		}
		*p = append(*p, x)
	}
	return nil
}

// NewFlagSet returns tabby-agent's flag set, writing into f. It is the one
// list of flags: the Kubernetes manifests' test checks against it.
func NewFlagSet(f *Flags) *flag.FlagSet {
	fs := flag.NewFlagSet("tabby-agent", flag.ContinueOnError)
	fs.StringVar(&f.Config, "config", "", "config file: one flag per line as name=value, '#' comments; command-line flags override it")
	fs.StringVar(&f.Node, "node", "", "node name (default: the host name)")
	fs.StringVar(&f.NodeIP, "node-ip", "", "IPv4 underlay address, optionally with its prefix length (default: the address of the default-route interface; \"none\" for an IPv6-only node)")
	fs.StringVar(&f.NodeIPv6, "node-ip6", "", "IPv6 underlay address with its prefix length, for IPv6 and dual-stack pools (default: none)")
	fs.StringVar(&f.Uplink, "uplink", "", "underlay interface, the VXLAN parent (default: the default-route interface)")
	fs.StringVar(&f.Datastore, "datastore", DefaultDatastore, "datastore URL: bolt:///path, etcd://h1:2379,h2:2379")
	fs.StringVar(&f.EtcdCA, "etcd-ca", "", "etcd CA certificate file")
	fs.StringVar(&f.EtcdCert, "etcd-cert", "", "etcd client certificate file")
	fs.StringVar(&f.EtcdKey, "etcd-key", "", "etcd client key file")
	fs.Var(&f.Pools, "pool", "bootstrap pool CIDR(s), created if missing (comma-separated or repeated; default 10.244.0.0/16 when the datastore has none)")
	fs.IntVar(&f.BlockSize, "block-size", 26, "block prefix length of created IPv4 pools")
	fs.IntVar(&f.BlockSize6, "block-size6", 122, "block prefix length of created IPv6 pools")
	fs.StringVar(&f.VXLANMode, "vxlan-mode", "Always", "Always, CrossSubnet or Never")
	fs.BoolVar(&f.NATOutgoing, "nat-outgoing", true, "masquerade pod traffic leaving the pools (created pools)")
	fs.StringVar(&f.ProxyARP, "proxy-arp", node.ProxyARPUserspace.String(), "userspace or kernel")
	fs.DurationVar(&f.HoldTime, "hold-time", 30*time.Second, "peers withdraw this node after this long without a heartbeat")
	fs.DurationVar(&f.ResyncInterval, "resync-interval", node.DefaultResyncInterval, "full resync interval")
	fs.StringVar(&f.StateDir, "state-dir", DefaultStateDir, "state directory (nodename, mtu for the CNI plugins)")
	fs.StringVar(&f.SysctlRoot, "sysctl-root", DefaultSysctlRoot, "where the node's /proc/sys is mounted")
	fs.StringVar(&f.Listen, "listen", "127.0.0.1:9099", "HTTP address for /metrics, /healthz and /readyz (empty: none)")
	fs.BoolVar(&f.GracefulRestart, "graceful-restart", true, "on SIGTERM keep the announcement, so peers keep the routes for the hold time and a restart costs no packet (false: same as --withdraw-on-stop)")
	fs.BoolVar(&f.WithdrawOnStop, "withdraw-on-stop", false, "on SIGTERM withdraw the node for good: peers drop its routes at once (also: tabbyctl node withdraw NAME)")
	fs.StringVar(&f.CNIBinDir, "cni-bin-dir", "", "install the tabby and tabby-ipam plugins (found next to this binary) here")
	fs.StringVar(&f.CNIConfDir, "cni-conf-dir", "", "install the tabby conflist here")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&f.StartTimeout, "start-timeout", 15*time.Second, "give up (exit 1) when the datastore does not answer within this at start")
	fs.IntVar(&f.GCPercent, "gc-percent", DefaultGCPercent, "Go garbage collection target, as GOGC (which overrides it when set); lower trades CPU for memory")
	return fs
}

// ErrConfigFile: the --config file is malformed.
var ErrConfigFile = errors.New("tabby-agent: config file")

// ParseArgs parses the command line and the --config file it names; flags
// given on the command line win over the file.
func ParseArgs(args []string, stderr io.Writer) (*Flags, error) {
	f := &Flags{}
	fs := NewFlagSet(f)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.Config == "" {
		return f, nil
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	file, err := os.Open(f.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfigFile, err)
	}
	defer file.Close()
	kv, err := ParseConfig(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Config, err)
	}
	for _, e := range kv {
		if e.Name == "config" {
			return nil, fmt.Errorf("%w: %s line %d: config cannot name another config file", ErrConfigFile, f.Config, e.Line)
		}
		fl := fs.Lookup(e.Name)
		if fl == nil {
			return nil, fmt.Errorf("%w: %s line %d: unknown flag %q", ErrConfigFile, f.Config, e.Line, e.Name)
		}
		if set[e.Name] {
			continue // the command line wins
		}
		if err := fs.Set(e.Name, e.Value); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %s=%s: %w", ErrConfigFile, f.Config, e.Line, e.Name, e.Value, err)
		}
	}
	return f, nil
}

// Entry is one name=value line of a config file. A plain value.
type Entry struct {
	Name, Value string
	Line        int
}

// ParseConfig reads name=value lines; blank lines and lines starting with
// '#' are skipped, white space around names and values is trimmed, and a
// leading "--" on a name is allowed.
func ParseConfig(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		name = strings.TrimPrefix(strings.TrimSpace(name), "--")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: line %d: want name=value, got %q", ErrConfigFile, n, line)
		}
		out = append(out, Entry{Name: name, Value: strings.TrimSpace(val), Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfigFile, err)
	}
	return out, nil
}
