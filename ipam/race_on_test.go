//go:build race

package ipam_test

// raceEnabled: the race detector slows JSON and the store by ~10x; the
// heaviest tests do less work under it (they run in full without -race).
const raceEnabled = true
