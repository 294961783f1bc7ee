package cni

import (
	"context"
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/datastore"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/veth"
)

// CNI error codes. 1–99 are the spec's (types.Err*); tabby's own start at
// 100.
const (
	// CodeIncompatibleVersion: the configuration's cniVersion is not
	// supported (spec code 1; skel reports it).
	CodeIncompatibleVersion = types.ErrIncompatibleCNIVersion
	// CodeInvalidEnvironment: a CNI_* variable is missing or bad, including
	// a CNI_NETNS that is not a network namespace (spec code 4).
	CodeInvalidEnvironment = types.ErrInvalidEnvironmentVariables
	// CodeInvalidNetworkConfig: the network configuration is bad (spec
	// code 7).
	CodeInvalidNetworkConfig = types.ErrInvalidNetworkConfig
	// CodeTryAgainLater: the datastore could not be reached in time or
	// writes kept conflicting; nothing was changed (spec code 11).
	CodeTryAgainLater = types.ErrTryAgainLater
	// CodeNotAvailable: STATUS found the plugin unable to serve ADDs
	// (spec code 50).
	CodeNotAvailable = types.ErrPluginNotAvailable

	// CodePoolExhausted: no address is left in the configured pools.
	CodePoolExhausted uint = 100
	// CodeInterfaceConflict: the pod namespace already has an interface
	// of the requested name that is not this attachment's.
	CodeInterfaceConflict uint = 101
	// CodeCheckFailed: CHECK found the attachment different from
	// prevResult; the message names the first difference.
	CodeCheckFailed uint = 102
	// CodeDatastore: the datastore answered with an error that retrying
	// will not fix (a pool in a bad state, the store closed).
	CodeDatastore uint = 103
	// CodeKernel: a netlink or sysctl operation failed.
	CodeKernel uint = 104
	// CodeGCIncomplete: GC ran to the end but some releases or interface
	// removals failed; the message lists them.
	CodeGCIncomplete uint = 105
	// CodeCorruptStore: the datastore is damaged (a truncated, empty or
	// bit-flipped bolt file, a record that does not decode:
	// datastore.ErrCorrupt or ipam.ErrCorrupt). Nothing was written and
	// retrying will not help: check and repair it with `tabbyctl ipam
	// check`, or restore it. STATUS reports it with this code too.
	CodeCorruptStore uint = 106
	// CodeHostNetNS: CNI_NETNS is the plugin's own network namespace (the
	// host's); refused before anything is allocated or written.
	CodeHostNetNS uint = 107
	// CodeInternal: anything else (spec's 999).
	CodeInternal = types.ErrInternal
)

// checkError is a CHECK mismatch.
type checkError struct{ msg string }

func (e *checkError) Error() string { return e.msg }

// gcError wraps the joined failures of a GC run.
type gcError struct{ err error }

func (e *gcError) Error() string { return "gc incomplete: " + e.err.Error() }
func (e *gcError) Unwrap() error { return e.err }

// ToError turns any error of the plugins into a CNI error with its code.
func ToError(err error) *types.Error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	var (
		ce *ConfigError
		ee *EnvError
		ck *checkError
		gc *gcError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &ce):
		return types.NewError(CodeInvalidNetworkConfig, msg, "")
	case errors.As(err, &ee):
		return types.NewError(CodeInvalidEnvironment, msg, "")
	case errors.As(err, &ck), errors.Is(err, veth.ErrMismatch):
		return types.NewError(CodeCheckFailed, msg, "")
	case errors.As(err, &gc):
		return types.NewError(CodeGCIncomplete, msg, "")
	case errors.Is(err, ErrHostNetNS):
		return types.NewError(CodeHostNetNS, msg, "")
	case errors.Is(err, datastore.ErrCorrupt), errors.Is(err, ipam.ErrCorrupt):
		// Before ErrUnavailable: a store that fails to open because it is
		// damaged may wrap both.
		return types.NewError(CodeCorruptStore, msg, "")
	case errors.Is(err, datastore.ErrUnavailable), errors.Is(err, ipam.ErrContention),
		errors.Is(err, context.DeadlineExceeded):
		return types.NewError(CodeTryAgainLater, msg, "")
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(CodePoolExhausted, msg, "")
	case errors.Is(err, ipam.ErrPoolOverlap), errors.Is(err, ipam.ErrPoolNotFound),
		errors.Is(err, ipam.ErrInvalid), errors.Is(err, datastore.ErrInvalid):
		return types.NewError(CodeInvalidNetworkConfig, msg, "")
	case errors.Is(err, veth.ErrConflict):
		return types.NewError(CodeInterfaceConflict, msg, "")
	case errors.Is(err, veth.ErrInvalidNetNS), errors.Is(err, veth.ErrInvalidIfName), errors.Is(err, veth.ErrInvalidKey):
		return types.NewError(CodeInvalidEnvironment, msg, "")
	case errors.Is(err, veth.ErrInvalid):
		return types.NewError(CodeInvalidNetworkConfig, msg, "")
	case errors.Is(err, ipam.ErrPoolDisabled), errors.Is(err, ipam.ErrInUse),
		errors.Is(err, datastore.ErrClosed):
		return types.NewError(CodeDatastore, msg, "")
	case errors.Is(err, errKernel):
		return types.NewError(CodeKernel, msg, "")
	}
	return types.NewError(CodeInternal, msg, "")
}

var errKernel = errors.New("kernel")

// ErrHostNetNS is returned (CNI code 107, CodeHostNetNS) when CNI_NETNS is
// the plugin's own network namespace or init's: ADD refuses it before it
// allocates or writes anything.
var ErrHostNetNS = errors.New("CNI_NETNS is the host's network namespace")
