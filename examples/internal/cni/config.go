package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/examples/internal/storeurl"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/reflector"
	"github.com/tabbynet/tabby/veth"
)

// Defaults of the network configuration.
const (
	// DefaultStateDir is the agent's state directory: the plugins read the
	// node name (file "nodename") and the MTU (file "mtu") there, and keep
	// the bolt datastore in it ("tabby.db").
	DefaultStateDir = "/var/lib/tabby"
	// DefaultMTU is used when neither the configuration nor the state
	// directory gives one.
	DefaultMTU = veth.DefaultMTU
	// IPAMType is the IPAM type that runs in-process in the tabby plugin.
	IPAMType = "tabby-ipam"
	// PluginType is the type of the main plugin.
	PluginType = "tabby"
)

// ProxyARP mode names in the configuration.
const (
	ProxyARPUserspace = "userspace"
	ProxyARPKernel    = "kernel"
)

// IPAMConf is the "ipam" section. For the tabby-ipam plugin used on its own
// (by ptp, bridge, ...) it may also carry nodeName, datastore and stateDir,
// which override the top-level keys.
type IPAMConf struct {
	Type      string   `json:"type"`
	Pools     []string `json:"pools,omitempty"`
	BlockSize int      `json:"blockSize,omitempty"`
	// BlockSize6 is the block size of IPv6 pools (default 122); pools of
	// both families make a dual-stack network: one address of each.
	BlockSize6 int    `json:"blockSize6,omitempty"`
	NodeName   string `json:"nodeName,omitempty"`
	Datastore  string `json:"datastore,omitempty"`
	StateDir   string `json:"stateDir,omitempty"`
	// Gateway returned by the standalone tabby-ipam (default 169.254.1.1).
	Gateway string `json:"gateway,omitempty"`
	// Routes returned by the standalone tabby-ipam; absent means
	// 0.0.0.0/0, an empty list means none (ptp: its pods cannot reach a
	// /32's gateway before ptp adds the gateway's link route itself).
	Routes []string `json:"routes"`

	// PrefixLength of the addresses the standalone tabby-ipam returns
	// (default 32; ptp needs a shorter one, such as the block size,
	// because it deletes the address's subnet route).
	PrefixLength int `json:"prefixLength,omitempty"`

	// Resolved values.
	PoolPrefixes []netip.Prefix `json:"-"`
	GatewayAddr  netip.Addr     `json:"-"`
	RoutePrefix  []netip.Prefix `json:"-"`
}

// NetConf is the network configuration of the tabby and tabby-ipam
// plugins, with defaults resolved by LoadConf.
type NetConf struct {
	CNIVersion string          `json:"cniVersion"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	NodeName   string          `json:"nodeName,omitempty"`
	Datastore  string          `json:"datastore,omitempty"`
	MTU        int             `json:"mtu,omitempty"`
	ProxyARP   string          `json:"proxyARP,omitempty"`
	StateDir   string          `json:"stateDir,omitempty"`
	LogFile    string          `json:"logFile,omitempty"`
	LogLevel   string          `json:"logLevel,omitempty"`
	IPAM       IPAMConf        `json:"ipam"`
	RawPrev    json.RawMessage `json:"prevResult,omitempty"`

	ValidAttachments  []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`

	// Resolved values.
	ARP   veth.ARPMode `json:"-"`
	Level slog.Level   `json:"-"`
	// HasAttachments is true when the GC request carried a list of valid
	// attachments (possibly empty).
	HasAttachments bool `json:"-"`
}

// ConfigError is a bad network configuration (CNI code 7). Nothing was
// changed when it is returned.
type ConfigError struct {
	Field, Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid network configuration: %s: %s", e.Field, e.Reason)
}

func confErr(field, format string, a ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// LoadConf parses and validates a network configuration and fills in the
// defaults: the state directory, node name (<stateDir>/nodename, else
// hostname), datastore (bolt in the state directory), MTU (<stateDir>/mtu,
// else 1450), proxy ARP (userspace). standalone says the configuration is
// for tabby-ipam on its own (the "ipam" section's own keys win). Errors
// are *ConfigError.
func LoadConf(data []byte, standalone bool, hostname func() (string, error)) (*NetConf, error) {
	var c NetConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, confErr("json", "%v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err == nil {
		_, a := raw["cni.dev/valid-attachments"]
		_, b := raw["cni.dev/attachments"]
		c.HasAttachments = a || b
	}
	if c.Name == "" {
		return nil, confErr("name", "missing")
	}
	if len(c.Name) > MaxNetworkNameLen {
		return nil, confErr("name", "%d bytes, at most %d", len(c.Name), MaxNetworkNameLen)
	}
	if !standalone && c.Type != PluginType {
		return nil, confErr("type", "%q, want %q", c.Type, PluginType)
	}
	if c.IPAM.Type == "" {
		if standalone {
			return nil, confErr("ipam.type", "missing")
		}
		c.IPAM.Type = IPAMType
	}
	if standalone && c.IPAM.Type != IPAMType {
		return nil, confErr("ipam.type", "%q, want %q", c.IPAM.Type, IPAMType)
	}
	if standalone {
		if c.IPAM.NodeName != "" {
			c.NodeName = c.IPAM.NodeName
		}
		if c.IPAM.Datastore != "" {
			c.Datastore = c.IPAM.Datastore
		}
		if c.IPAM.StateDir != "" {
			c.StateDir = c.IPAM.StateDir
		}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		return nil, confErr("stateDir", "%q is not an absolute path", c.StateDir)
	}
	if c.NodeName == "" {
		if b, err := os.ReadFile(filepath.Join(c.StateDir, "nodename")); err == nil {
			c.NodeName = strings.TrimSpace(string(b))
		}
	}
	if c.NodeName == "" && hostname != nil {
		h, err := hostname()
		if err != nil {
			return nil, confErr("nodeName", "not set and no hostname: %v", err)
		}
		c.NodeName = h
	}
	if !reflector.ValidNodeName(c.NodeName) {
		return nil, confErr("nodeName", "%q is not a valid node name", c.NodeName)
	}
	if c.Datastore == "" {
		c.Datastore = "bolt://" + filepath.Join(c.StateDir, "tabby.db")
	}
	if err := storeurl.Validate(c.Datastore); err != nil {
		return nil, confErr("datastore", "%v", err)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
		if b, err := os.ReadFile(filepath.Join(c.StateDir, "mtu")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= veth.MinMTU && n <= veth.MaxMTU {
				c.MTU = n
			}
		}
	}
	if c.MTU < veth.MinMTU || c.MTU > veth.MaxMTU {
		return nil, confErr("mtu", "%d is outside %d..%d", c.MTU, veth.MinMTU, veth.MaxMTU)
	}
	switch c.ProxyARP {
	case "", ProxyARPUserspace:
		c.ProxyARP, c.ARP = ProxyARPUserspace, veth.ARPUserspace
	case ProxyARPKernel:
		c.ARP = veth.ARPKernel
	default:
		return nil, confErr("proxyARP", "%q, want %q or %q", c.ProxyARP, ProxyARPUserspace, ProxyARPKernel)
	}
	switch strings.ToLower(c.LogLevel) {
	case "", "warn", "warning":
		c.Level = slog.LevelWarn
	case "debug":
		c.Level = slog.LevelDebug
	case "info":
		c.Level = slog.LevelInfo
	case "error":
		c.Level = slog.LevelError
	default:
		return nil, confErr("logLevel", "%q, want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFile != "" && !filepath.IsAbs(c.LogFile) {
		return nil, confErr("logFile", "%q is not an absolute path", c.LogFile)
	}
	if c.IPAM.Type == IPAMType {
		if err := c.IPAM.resolve(); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

func (i *IPAMConf) resolve() error {
	if i.BlockSize != 0 && (i.BlockSize < ipam.MinBlockSize4 || i.BlockSize > ipam.MaxBlockSize4) {
		return confErr("ipam.blockSize", "%d is outside %d..%d", i.BlockSize, ipam.MinBlockSize4, ipam.MaxBlockSize4)
	}
	if i.BlockSize6 != 0 && (i.BlockSize6 < ipam.MinBlockSize6 || i.BlockSize6 > ipam.MaxBlockSize6) {
		return confErr("ipam.blockSize6", "%d is outside %d..%d", i.BlockSize6, ipam.MinBlockSize6, ipam.MaxBlockSize6)
	}
	for _, s := range i.Pools {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return confErr("ipam.pools", "%q: %v", s, err)
		}
		if p != p.Masked() {
			return confErr("ipam.pools", "%q has host bits set (want %v)", s, p.Masked())
		}
		if p.Addr().Is4In6() {
			return confErr("ipam.pools", "%q: an IPv4-mapped IPv6 prefix", s)
		}
		bs := i.blockSize(p)
		if p.Bits() > bs {
			return confErr("ipam.pools", "%q is smaller than a block (/%d)", s, bs)
		}
		pool := ipam.Pool{Name: PoolName(p), CIDR: p, BlockSize: bs, VXLANMode: ipam.VXLANAlways}
		if err := pool.Validate(); err != nil {
			return confErr("ipam.pools", "%q: %v", s, err)
		}
		for _, q := range i.PoolPrefixes {
			if q.Overlaps(p) {
				return confErr("ipam.pools", "%q overlaps %v", s, q)
			}
		}
		i.PoolPrefixes = append(i.PoolPrefixes, p)
	}
	if i.PrefixLength == 0 {
		i.PrefixLength = 32
	}
	if i.PrefixLength < 1 || i.PrefixLength > 32 {
		return confErr("ipam.prefixLength", "%d is outside 1..32", i.PrefixLength)
	}
	i.GatewayAddr = veth.Gateway4()
	if i.Gateway != "" {
		a, err := netip.ParseAddr(i.Gateway)
		if err != nil || !a.Is4() {
			return confErr("ipam.gateway", "%q is not an IPv4 address", i.Gateway)
		}
		i.GatewayAddr = a
	}
	if i.Routes == nil {
		i.RoutePrefix = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	}
	for _, s := range i.Routes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return confErr("ipam.routes", "%q: %v", s, err)
		}
		i.RoutePrefix = append(i.RoutePrefix, p.Masked())
	}
	return nil
}

// blockSize is the configured (or default) block size for pool p's family.
func (i *IPAMConf) blockSize(p netip.Prefix) int {
	if p.Addr().Is6() {
		if i.BlockSize6 != 0 {
			return i.BlockSize6
		}
		return ipam.DefaultBlockSize6
	}
	if i.BlockSize != 0 {
		return i.BlockSize
	}
	return ipam.DefaultBlockSize4
}

// Families says which address families the configured pools have; with
// no pools both are false (every enabled pool is used).
func (i *IPAMConf) Families() (v4, v6 bool) {
	for _, p := range i.PoolPrefixes {
		v4 = v4 || p.Addr().Is4()
		v6 = v6 || p.Addr().Is6()
	}
	return v4, v6
}

// PoolName is the name the plugins give a pool they create for a CIDR of
// the configuration ("10.244.0.0-16").
func PoolName(p netip.Prefix) string {
	return strings.ReplaceAll(p.Addr().String(), ":", "-") + "-" + strconv.Itoa(p.Bits())
}

// Attachments returns the valid attachments of a GC request (the legacy
// key as well).
func (c *NetConf) Attachments() []types.GCAttachment {
	return append(append([]types.GCAttachment(nil), c.ValidAttachments...), c.LegacyAttachments...)
}

// Handle is the IPAM handle of one attachment: <network>.<containerID>.<ifname>.
func Handle(network, containerID, ifName string) string {
	return network + "." + containerID + "." + ifName
}

// PodArgs are the Kubernetes keys of CNI_ARGS.
type PodArgs struct {
	Namespace, Name, InfraContainerID string
}

// Bounds of what the runtime passes; beyond them a command fails with CNI
// code 4 (invalid environment variables) before it reads anything else.
const (
	// MaxContainerIDLen bounds CNI_CONTAINERID (runtimes use 64 hex
	// characters). With MaxNetworkNameLen and the 15 bytes of an
	// interface name, the IPAM handle "<network>.<id>.<ifname>" stays
	// within IPAM's 253.
	MaxContainerIDLen = 128
	// MaxNetworkNameLen bounds the configuration's name (CNI code 7).
	MaxNetworkNameLen = 100
	// MaxNetNSLen bounds CNI_NETNS (PATH_MAX - 1).
	MaxNetNSLen = 4095
	// MaxArgsLen bounds CNI_ARGS as a whole.
	MaxArgsLen = 8192
	// MaxPodNamespaceLen and MaxPodNameLen bound K8S_POD_NAMESPACE (a DNS
	// label) and K8S_POD_NAME (a DNS subdomain); MaxContainerIDLen bounds
	// K8S_POD_INFRA_CONTAINER_ID.
	MaxPodNamespaceLen = 63
	MaxPodNameLen      = 253
)

// ValidateCmdArgs bounds and checks the CNI_* values of a call (the ones
// that are set; skel says which are required): the container ID is at
// most MaxContainerIDLen characters of [A-Za-z0-9_.-] starting with a
// letter or digit, the interface name a valid Linux name (at most 15
// bytes, no '/', ':' or white space, not "." or ".."), the netns path
// at most MaxNetNSLen bytes, CNI_ARGS at most MaxArgsLen bytes. Errors
// are *EnvError (CNI code 4).
func ValidateCmdArgs(a *skel.CmdArgs) error {
	if id := a.ContainerID; id != "" {
		if len(id) > MaxContainerIDLen {
			return &EnvError{Var: "CNI_CONTAINERID", Reason: fmt.Sprintf("%d bytes, at most %d", len(id), MaxContainerIDLen)}
		}
		for i := 0; i < len(id); i++ {
			b := id[i]
			alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
			if !alnum && (i == 0 || b != '_' && b != '.' && b != '-') {
				return &EnvError{Var: "CNI_CONTAINERID", Reason: fmt.Sprintf("invalid character %q at %d", b, i)}
			}
		}
	}
	if a.IfName != "" {
		if err := veth.ValidateIfName(a.IfName); err != nil {
			return &EnvError{Var: "CNI_IFNAME", Reason: err.Error()}
		}
	}
	if len(a.Netns) > MaxNetNSLen {
		return &EnvError{Var: "CNI_NETNS", Reason: fmt.Sprintf("%d bytes, at most %d", len(a.Netns), MaxNetNSLen)}
	}
	if len(a.Args) > MaxArgsLen {
		return &EnvError{Var: "CNI_ARGS", Reason: fmt.Sprintf("%d bytes, at most %d", len(a.Args), MaxArgsLen)}
	}
	return nil
}

// ParseArgs reads CNI_ARGS ("K1=V1;K2=V2"). Unknown keys are ignored; a
// pair without "=", more than MaxArgsLen bytes or a Kubernetes value
// longer than its bound is an error (CNI code 4).
func ParseArgs(s string) (PodArgs, error) {
	var a PodArgs
	if s == "" {
		return a, nil
	}
	if len(s) > MaxArgsLen {
		return a, &EnvError{Var: "CNI_ARGS", Reason: fmt.Sprintf("%d bytes, at most %d", len(s), MaxArgsLen)}
	}
	bound := func(k, v string, n int) error {
		if len(v) > n {
			return &EnvError{Var: "CNI_ARGS", Reason: fmt.Sprintf("%s: %d bytes, at most %d", k, len(v), n)}
		}
		return nil
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return a, &EnvError{Var: "CNI_ARGS", Reason: fmt.Sprintf("%q is not KEY=VALUE", kv)}
		}
		var err error
		switch k {
		case "K8S_POD_NAMESPACE":
			a.Namespace, err = v, bound(k, v, MaxPodNamespaceLen)
		case "K8S_POD_NAME":
			a.Name, err = v, bound(k, v, MaxPodNameLen)
		case "K8S_POD_INFRA_CONTAINER_ID":
			a.InfraContainerID, err = v, bound(k, v, MaxContainerIDLen)
		}
		if err != nil {
			return PodArgs{}, err
		}
	}
	return a, nil
}

// WorkloadKey is the veth workload key: "<namespace>.<pod>" for a
// Kubernetes pod, else the container ID.
func (a PodArgs) WorkloadKey(containerID string) string {
	if a.Namespace != "" && a.Name != "" {
		return veth.WorkloadKey(a.Namespace, a.Name)
	}
	return containerID
}

// EnvError is a bad CNI_* environment variable (CNI code 4).
type EnvError struct {
	Var, Reason string
}

func (e *EnvError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Var, e.Reason) }

var errNoPrevResult = errors.New("prevResult missing")
