//go:build linux

package nat_test

import (
	"github.com/tabbynet/tabby/nat"
	"github.com/tabbynet/tabby/nat/nattest"
)

var _ nat.Conn = (*nattest.Conn)(nil)
