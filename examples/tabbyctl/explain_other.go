//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

// explainCmd needs Linux's network namespaces.
func (a *app) explainCmd(context.Context, []string, io.Writer) error {
	return errors.ErrUnsupported
}
