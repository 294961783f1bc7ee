// Package storetest is the contract test suite for datastore.Store
// implementations. Every store in this module runs it, and so can a store
// written elsewhere:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) datastore.Store { return mystore.New(...) })
//	}
//
// It checks every method and error (ErrNotFound, ErrExists, ErrConflict,
// ErrInvalid, ErrClosed, and ErrCompacted for stores that implement
// Compacter), transaction atomicity, compare-and-swap races (goroutines
// incrementing one counter end with the exact count, exactly one of many
// concurrent Creates wins), watch order, and list-then-watch consistency
// while writers run. It owns no state; the tests use keys under "/st/".
package storetest
