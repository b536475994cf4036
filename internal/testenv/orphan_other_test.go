//go:build !linux

package testenv_test

import "syscall"

// Outside Linux servers have no parent-death signal: nothing to test.
func runOrphanHelper() {}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
