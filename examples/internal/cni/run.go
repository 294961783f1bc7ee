package cni

import (
	"encoding/json"
	"io"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// SpecVersions are the CNI spec versions both plugins speak.
var specVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// VersionInfo is what VERSION reports.
func VersionInfo() cniversion.PluginInfo { return cniversion.PluginSupports(specVersions...) }

// Commands are the five CNI commands of a plugin (Plugin, IPAMPlugin).
type Commands interface {
	Add(*skel.CmdArgs) (types.Result, error)
	Del(*skel.CmdArgs) error
	Check(*skel.CmdArgs) error
	GC(*skel.CmdArgs) error
	Status(*skel.CmdArgs) error
}

// Funcs adapts cmds to skel: ADD's result is converted to the
// configuration's cniVersion and written to stdout, and every error becomes
// a CNI error with its code (ToError).
func Funcs(cmds Commands, stdout io.Writer) skel.CNIFuncs {
	wrap := func(f func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
		return func(a *skel.CmdArgs) error {
			if err := f(a); err != nil {
				return ToError(err)
			}
			return nil
		}
	}
	return skel.CNIFuncs{
		Add: func(a *skel.CmdArgs) error {
			r, err := cmds.Add(a)
			if err != nil {
				return ToError(err)
			}
			var v struct {
				CNIVersion string `json:"cniVersion"`
			}
			_ = json.Unmarshal(a.StdinData, &v)
			out, err := r.GetAsVersion(v.CNIVersion)
			if err != nil {
				return types.NewError(types.ErrIncompatibleCNIVersion, err.Error(), "")
			}
			if err := out.PrintTo(stdout); err != nil {
				return types.NewError(types.ErrIOFailure, err.Error(), "")
			}
			return nil
		},
		Del:    wrap(cmds.Del),
		Check:  wrap(cmds.Check),
		GC:     wrap(cmds.GC),
		Status: wrap(cmds.Status),
	}
}

// NetNSOverrideEnv is skel's switch for its own host-namespace check
// ("CNI_NETNS_OVERRIDE"). skel runs that check after the command (an ADD
// has already allocated and plumbed, a DEL released), so the plugins'
// mains set it to 1: Plugin and IPAMPlugin refuse the host's namespace
// themselves, before anything is written (ErrHostNetNS, code 107).
const NetNSOverrideEnv = "CNI_NETNS_OVERRIDE"
