package injectorcmd

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestTuneRuntime(t *testing.T) {
	procs, gc, limit := runtime.GOMAXPROCS(0), debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	})
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	runtime.GOMAXPROCS(2)
	tuneRuntime(getenv)
	if got := runtime.GOMAXPROCS(0); got != defaultMaxProcs {
		t.Errorf("GOMAXPROCS %d, want %d", got, defaultMaxProcs)
	}
	if got := debug.SetGCPercent(-1); got != defaultGCPercent {
		t.Errorf("GOGC %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit %d, want %d", got, defaultMemoryLimit)
	}

	// The environment wins: tuneRuntime leaves each setting alone.
	env["GOMAXPROCS"], env["GOGC"], env["GOMEMLIMIT"] = "2", "100", "64MiB"
	runtime.GOMAXPROCS(2)
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(64 << 20)
	tuneRuntime(getenv)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("GOMAXPROCS set in the environment was changed to %d", got)
	}
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Errorf("GOGC set in the environment was changed to %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("GOMEMLIMIT set in the environment was changed to %d", got)
	}
}
