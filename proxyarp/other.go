//go:build !linux

package proxyarp

import (
	"context"
	"errors"
)

func kernelLinks(string) LinkSource { return unsupportedLinks{} }

type unsupportedLinks struct{}

func (unsupportedLinks) Links() ([]Link, error) { return nil, errors.ErrUnsupported }
func (unsupportedLinks) Watch(context.Context, chan<- struct{}) error {
	return errors.ErrUnsupported
}

// ListenPacket returns a ListenFunc that fails: packet sockets are Linux only.
func ListenPacket(string) ListenFunc {
	return func(context.Context, Link) (Conn, error) { return nil, errors.ErrUnsupported }
}

func setRealtime(int) error { return errors.ErrUnsupported }
