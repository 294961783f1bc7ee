//go:build unix

package ipam

import "syscall"

// processCPU is the CPU time (user + system, all threads, garbage collector
// included) this process has used, in nanoseconds. On a machine shared with
// other work it is a steadier measure than wall time, which also counts
// waiting for a CPU.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
