package injectorcmd

import (
	"runtime/debug"
	"testing"
)

func TestTuneRuntime(t *testing.T) {
	gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	})
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	tuneRuntime(getenv)
	if got := debug.SetGCPercent(-1); got != defaultGCPercent {
		t.Errorf("GOGC %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit %d, want %d", got, defaultMemoryLimit)
	}

	// The environment wins: tuneRuntime leaves each setting alone.
	env["GOGC"], env["GOMEMLIMIT"] = "100", "64MiB"
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(64 << 20)
	tuneRuntime(getenv)
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Errorf("GOGC set in the environment was changed to %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("GOMEMLIMIT set in the environment was changed to %d", got)
	}
}
