//go:build unix && !linux

package testenv

import (
	"syscall"
	"time"
)

// sysProcAttr puts a server in its own process group. Outside Linux there is
// no parent-death signal: a test binary killed outright leaves servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// wrapBinaries returns the targets unchanged: no death-signal wrapper here.
func wrapBinaries(_ string, targets map[string]string) (map[string]string, error) {
	return targets, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// waitStopped is a no-op here: there is no portable way to see a stop.
func waitStopped(int, bool, time.Duration) error { return nil }
