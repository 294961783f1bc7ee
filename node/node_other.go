//go:build !linux

package node

import (
	"context"
	"errors"
)

// Kernel is the node's kernel; on this system there is none to open.
type Kernel struct{}

func (k *Kernel) validate(ProxyARPMode) error { return nil }

// OpenKernel returns errors.ErrUnsupported: the dataplane is Linux only.
func OpenKernel(path, sysctlRoot string) (*Kernel, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (k *Kernel) Close() error { return nil }

// Node is one node; it runs on Linux only.
type Node struct{}

// New checks cfg and returns errors.ErrUnsupported.
func New(cfg Config) (*Node, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, errors.ErrUnsupported
}

// Run returns errors.ErrUnsupported.
func (n *Node) Run(ctx context.Context) error { return errors.ErrUnsupported }
