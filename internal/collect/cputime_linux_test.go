package collect

import (
	"runtime"
	"syscall"
	"testing"
)

// cpuPerOp reports the CPU time the benchmark's own thread spent per operation, which stays
// meaningful on a machine shared with other work, where wall-clock ns/op includes waiting.
func cpuPerOp(b *testing.B, body func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	_ = syscall.Getrusage(rusageThread, &before)
	b.ResetTimer()
	body()
	b.StopTimer()
	_ = syscall.Getrusage(rusageThread, &after)
	cpu := syscall.TimevalToNsec(after.Utime) + syscall.TimevalToNsec(after.Stime) -
		syscall.TimevalToNsec(before.Utime) - syscall.TimevalToNsec(before.Stime)
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
