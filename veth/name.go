package veth

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// DefaultPrefix is the host interface name prefix, as in Calico.
	DefaultPrefix = "cali"
	// MaxIfNameLen is the longest interface name Linux accepts
	// (IFNAMSIZ - 1).
	MaxIfNameLen = 15
	// hashLen is the number of hex characters of sha1(key) in a host name.
	hashLen = 11
	// MaxPrefixLen is the longest prefix that keeps host names within
	// MaxIfNameLen.
	MaxPrefixLen = MaxIfNameLen - hashLen
)

// WorkloadKey returns the workload key of a Kubernetes pod,
// "<namespace>.<pod>", from which Calico (and tabby) derive the host
// interface name. Workloads that are not Kubernetes pods use their
// container ID as the key.
func WorkloadKey(namespace, pod string) string { return namespace + "." + pod }

// HostIfName returns the host-side interface name of the workload with the
// given key: prefix followed by the first 11 hex characters of
// sha1(key). With the default prefix "cali" the name is exactly 15 bytes,
// the Linux maximum, as in the seed ("cali6ff8e3ade03"). An empty prefix
// means DefaultPrefix. It does not validate its arguments: New rejects
// prefixes longer than MaxPrefixLen, and Setup rejects empty keys.
func HostIfName(prefix, key string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	sum := sha1.Sum([]byte(key))
	return prefix + hex.EncodeToString(sum[:])[:hashLen]
}

// ValidateIfName reports whether name is a valid interface name: what
// Linux accepts (dev_valid_name: 1 to 15 bytes, not "." or "..", no '/',
// ':', NUL or white space) and, stricter than Linux, valid UTF-8 without
// Unicode white space. The error is an *InputError wrapping
// ErrInvalidIfName.
func ValidateIfName(name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "empty"
	case len(name) > MaxIfNameLen:
		reason = fmt.Sprintf("%d bytes, at most %d allowed", len(name), MaxIfNameLen)
	case name == "." || name == "..":
		reason = "reserved name"
	case !utf8.ValidString(name):
		reason = "not valid UTF-8"
	case strings.ContainsAny(name, "/:\x00"):
		reason = "contains '/', ':' or NUL"
	case strings.IndexFunc(name, unicode.IsSpace) >= 0:
		reason = "contains white space"
	}
	if reason == "" {
		return nil
	}
	return &InputError{Field: "interface name", Value: name, Reason: reason, Err: ErrInvalidIfName}
}
