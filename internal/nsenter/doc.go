// Package nsenter is the one place in tabby that moves an OS thread into
// another network namespace. Everything else names namespaces as values
// (netlink.NewHandleAt, netlink.NsFd); only things that have no such form,
// like /proc/sys/net files and sockets, are opened through Do.
//
// Namespaces exist only on Linux: elsewhere Do, and DoPath with a
// non-empty path, return an error wrapping errors.ErrUnsupported.
package nsenter
