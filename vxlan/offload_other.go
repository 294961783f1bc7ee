//go:build !linux

package vxlan

import "errors"

func kernelRelease() (string, error) { return "", errors.ErrUnsupported }

type ethtoolOffloader struct{ ns string }

func (ethtoolOffloader) SetTxChecksum(string, bool) error { return errors.ErrUnsupported }
