// Package nattest is an in-memory stand-in for an nftables connection, for
// unit tests of nat.Manager (and of users' code around it) that run without
// root. It implements nat.Conn with the kernel's transaction semantics: calls
// that write are queued, Flush applies the queue all or nothing, and errors
// carry the kernel's errno values (ENOENT, EEXIST, EINVAL). One check is
// stricter than the kernel: AddSet requires a Set.ID, unique within the
// transaction (see Conn.AddSet).
//
// It stores what it is given (tables, sets, elements, chains, rules with
// their expressions) and returns copies; it does not evaluate rules.
package nattest
