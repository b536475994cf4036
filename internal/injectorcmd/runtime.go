package injectorcmd

import (
	"runtime/debug"
)

// Runtime defaults for an admission server. The environment wins for each:
// GOGC and GOMEMLIMIT, as the Go runtime documents.
//
// GOGC 400 with a soft limit of 18 MiB: every request allocates short-lived
// JSON trees while little stays live, so a larger GOGC cuts collector CPU
// by a fifth, and the limit keeps the heap, and the pod's RSS, near 30 MiB
// anyway.
//
// GOMAXPROCS is left to Go (the CPUs the container may use). Tried: one P.
// With 8 TLS clients sharing the 2 cores, the cached-admission p99 was
// 1.1–3.2 ms in 14 of 16 runs against 3.2–5.0 ms with two Ps, but 10 ms in
// the other two, and a new pod each request fell from ~5,200/s to ~4,100/s:
// too uneven for a default. GOMAXPROCS in the environment sets it.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 18 << 20
)

func tuneRuntime(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
