package datastore

import "fmt"

// MaxValueSize is the largest value every Store accepts (etcd's default
// request limit is 1.5 MiB; this leaves room for the key and framing).
const MaxValueSize = 1 << 20

// MaxTxnOps is the largest number of ops in one Txn that every Store
// accepts (etcd's default --max-txn-ops).
const MaxTxnOps = 128

// ValidateOps checks a transaction before any store looks at its data: every
// op has a valid type (and there are at most MaxTxnOps), a valid key (ValidKey), a value no larger than
// MaxValueSize, a revision that makes sense for its type (>= 1 for update
// and delete, >= 0 for check), and no key appears twice. The error wraps
// ErrInvalid. Stores call it so that they reject the same input the same way.
func ValidateOps(ops []Op) error {
	if len(ops) > MaxTxnOps {
		return fmt.Errorf("%d ops in one transaction (at most %d): %w", len(ops), MaxTxnOps, ErrInvalid)
	}
	seen := make(map[string]struct{}, len(ops))
	for i, op := range ops {
		if err := validateOp(op); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		if _, dup := seen[op.Key]; dup {
			return fmt.Errorf("op %d: key %q appears twice: %w", i, op.Key, ErrInvalid)
		}
		seen[op.Key] = struct{}{}
	}
	return nil
}

func validateOp(op Op) error {
	if !ValidKey(op.Key) {
		return fmt.Errorf("%s: key %q: %w", op.Type, op.Key, ErrInvalid)
	}
	switch op.Type {
	case OpCreate:
		if len(op.Value) > MaxValueSize {
			return fmt.Errorf("create %q: value of %d bytes: %w", op.Key, len(op.Value), ErrInvalid)
		}
	case OpUpdate:
		if len(op.Value) > MaxValueSize {
			return fmt.Errorf("update %q: value of %d bytes: %w", op.Key, len(op.Value), ErrInvalid)
		}
		if op.Revision < 1 {
			return fmt.Errorf("update %q: revision %d: %w", op.Key, op.Revision, ErrInvalid)
		}
	case OpDelete, OpCheck:
	default:
		return fmt.Errorf("op type %d: %w", int(op.Type), ErrInvalid)
	}
	if op.Lease < 0 || (op.Lease != 0 && op.Type != OpCreate && op.Type != OpUpdate) {
		return fmt.Errorf("%s %q: lease %d: %w", op.Type, op.Key, op.Lease, ErrInvalid)
	}
	switch op.Type {
	case OpDelete:
		if op.Revision < 1 {
			return fmt.Errorf("delete %q: revision %d: %w", op.Key, op.Revision, ErrInvalid)
		}
	case OpCheck:
		if op.Revision < 0 {
			return fmt.Errorf("check %q: revision %d: %w", op.Key, op.Revision, ErrInvalid)
		}
	}
	return nil
}

// ValidatePrefix checks a List or Watch prefix: empty (everything) or
// printable ASCII without spaces, at most 1024 bytes. The error wraps
// ErrInvalid.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > 1024 {
		return fmt.Errorf("prefix of %d bytes: %w", len(prefix), ErrInvalid)
	}
	for i := 0; i < len(prefix); i++ {
		if prefix[i] <= ' ' || prefix[i] > '~' {
			return fmt.Errorf("prefix %q: %w", prefix, ErrInvalid)
		}
	}
	return nil
}
