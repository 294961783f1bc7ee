package main

import (
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"--gateway", "not-an-ip"}, "--gateway"},
		{[]string{"--gateway", "fe80::1"}, "invalid config"},
		{[]string{"--iface-prefix", ""}, "nothing selected"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--rt-priority", "100"}, "realtime priority"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	} {
		err := run(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("run(%q) = %v, want error containing %q", tt.args, err, tt.err)
		}
	}
}
