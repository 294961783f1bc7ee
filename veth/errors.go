package veth

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is. Every *InputError also matches
// ErrInvalid.
var (
	// ErrInvalid matches every error about bad input (*InputError).
	ErrInvalid = errors.New("veth: invalid input")
	// ErrInvalidKey: the workload key is empty.
	ErrInvalidKey = errors.New("veth: invalid workload key")
	// ErrInvalidIfName: an interface name Linux would reject.
	ErrInvalidIfName = errors.New("veth: invalid interface name")
	// ErrInvalidNetNS: the pod namespace path does not exist or is not a
	// network namespace.
	ErrInvalidNetNS = errors.New("veth: invalid network namespace")
	// ErrInvalidAddress: a pod address that is not a single, usable host
	// address (or none at all, or one given twice).
	ErrInvalidAddress = errors.New("veth: invalid pod address")
	// ErrInvalidMTU: an MTU outside MinMTU..MaxMTU.
	ErrInvalidMTU = errors.New("veth: invalid MTU")
	// ErrInvalidConfig: a Config field other than the MTU is invalid.
	ErrInvalidConfig = errors.New("veth: invalid config")

	// ErrNotNamespace is what an Opener wraps when the path exists but is
	// not a network namespace. Setup reports it as ErrInvalidNetNS.
	ErrNotNamespace = errors.New("not a network namespace")

	// ErrMismatch: Check found the kernel state different from what Setup
	// would have made. The message names the first difference.
	ErrMismatch = errors.New("veth: state differs from the expected")
	// ErrConflict: the pod's namespace already has an interface of the
	// requested name that is not this workload's veth. Setup changes
	// nothing in that case.
	ErrConflict = errors.New("veth: pod interface name already in use")
)

// InputError describes bad input to New, Setup, Check or Teardown. Nothing
// in the kernel was changed when it is returned. It matches ErrInvalid and
// its Err (one of the ErrInvalid* sentinels) with errors.Is.
type InputError struct {
	Field  string // "workload key", "interface name", "netns", "address", "MTU", ...
	Value  string // the offending value, as given
	Reason string // what is wrong with it
	Err    error  // ErrInvalidKey, ErrInvalidIfName, ...
	Cause  error  // underlying error, if any (e.g. from opening the netns)
}

func (e *InputError) Error() string {
	s := fmt.Sprintf("%v: %s %q: %s", e.Err, e.Field, e.Value, e.Reason)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the sentinel and the cause.
func (e *InputError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// Is makes every InputError match ErrInvalid.
func (e *InputError) Is(target error) bool { return target == ErrInvalid }
