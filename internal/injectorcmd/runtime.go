package injectorcmd

import (
	"runtime"
	"runtime/debug"
)

// Runtime defaults for an admission server. The environment wins for each:
// GOGC, GOMEMLIMIT and GOMAXPROCS, as the Go runtime documents.
//
//   - GOGC 400 with a soft limit of 18 MiB: every request allocates short-
//     lived JSON trees while little stays live, so a larger GOGC cuts
//     collector CPU by a fifth, and the limit keeps the heap, and the pod's
//     RSS, near 30 MiB anyway.
//   - GOMAXPROCS 1: the API server waits on every admission, so the tail
//     matters more than peak throughput. On a node whose cores are shared
//     (here: 2 cores with eight TLS clients), goroutines queued on a second
//     P whose thread the kernel has descheduled waited milliseconds: p99
//     4.1–4.6 ms with two Ps, 1.1–1.6 ms with one, at the same 22,000
//     cached admissions/s; a new pod each request drops from ~5,200/s to
//     ~4,100/s per replica, far above any cluster's pod creation rate.
//     GOMAXPROCS in the environment (or more replicas) buys throughput back.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 18 << 20
	defaultMaxProcs    = 1
)

func tuneRuntime(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(defaultMaxProcs)
	}
}
