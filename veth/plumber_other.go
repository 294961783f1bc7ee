//go:build !linux

package veth

import (
	"context"
	"errors"
)

// Setup is only implemented on Linux.
func (p *Plumber) Setup(ctx context.Context, pod Pod) (*Result, error) {
	if _, err := p.validate(pod); err != nil {
		return nil, err
	}
	return nil, errors.ErrUnsupported
}

// Check is only implemented on Linux.
func (p *Plumber) Check(ctx context.Context, pod Pod) error {
	if _, err := p.validate(pod); err != nil {
		return err
	}
	return errors.ErrUnsupported
}

// Teardown is only implemented on Linux.
func (p *Plumber) Teardown(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	return errors.ErrUnsupported
}

// OpenNetNS is only implemented on Linux.
func OpenNetNS(path string) (PodNetNS, error) { return nil, errors.ErrUnsupported }

// SysctlAt is only implemented on Linux: its methods fail.
func SysctlAt(path string) Sysctl { return unsupportedSysctl{} }

type unsupportedSysctl struct{}

func (unsupportedSysctl) SetSysctl(key, value string) error { return errors.ErrUnsupported }
func (unsupportedSysctl) Sysctl(key string) (string, error) { return "", errors.ErrUnsupported }
