package cni

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// LockFile is the name, in the state directory, of the host-wide IPAM lock.
const LockFile = "ipam.lock"

// FileLock is the default Env.HostLock: an exclusive lock (flock, or
// LockFileEx on Windows) on
// <stateDir>/ipam.lock, waited for until ctx ends (then the error wraps
// context.DeadlineExceeded: try again later). Like Calico's IPAM lock it
// makes the plugins of one host take turns on the IPAM read-modify-write,
// so that they do not all race for the same block record and retry
// (optimistic concurrency stays, for writers on other hosts).
func FileLock(ctx context.Context, stateDir string) (func(), error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam lock: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam lock: %w", err)
	}
	if lockFile(f, false) == nil {
		return func() { unlockClose(f) }, nil
	}
	done := make(chan error, 1)
	go func() { done <- lockFile(f, true) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ipam lock: %w", err)
		}
		return func() { unlockClose(f) }, nil
	case <-ctx.Done():
		// Release the lock as soon as the waiting lock call gets it.
		go func() {
			<-done
			unlockClose(f)
		}()
		return nil, fmt.Errorf("ipam lock %s: %w", f.Name(), ctx.Err())
	}
}
