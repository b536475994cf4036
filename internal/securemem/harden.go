package securemem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Report says what Harden achieved; the agent logs it once and exports it.
type Report struct {
	NonDumpable bool  // PR_SET_DUMPABLE 0
	NoCore      bool  // RLIMIT_CORE 0
	LockedAll   bool  // mlockall(MCL_CURRENT|MCL_FUTURE) succeeded
	LockAllErr  error // why mlockall failed (EPERM/ENOMEM: no CAP_IPC_LOCK, small RLIMIT_MEMLOCK)
	Secretmem   bool  // memfd_secret is available
	MemlockMax  uint64
}

// Harden makes the process non-dumpable (no core files, no ptrace by
// same-UID processes, /proc/PID/mem readable only by root), sets RLIMIT_CORE
// to 0 and, when tryLockAll, locks all current and future pages. It never
// fails the process: what could not be done is in the Report.
func Harden(tryLockAll bool) Report {
	var r Report
	r.NonDumpable = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) == nil
	r.NoCore = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}) == nil
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
		r.MemlockMax = lim.Cur
	}
	if tryLockAll && !(lim.Cur == unix.RLIM_INFINITY || hasCapIPCLock()) {
		// With MCL_FUTURE every later allocation counts against
		// RLIMIT_MEMLOCK; past it the Go runtime's mmap fails and the
		// process dies. Lock everything only when that cannot happen.
		r.LockAllErr = fmt.Errorf("mlockall skipped: no CAP_IPC_LOCK and RLIMIT_MEMLOCK is %d bytes", lim.Cur)
		tryLockAll = false
	}
	if tryLockAll {
		if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
			r.LockAllErr = fmt.Errorf("mlockall: %w", err)
		} else {
			r.LockedAll = true
		}
	}
	if b, err := New(1); err == nil {
		r.Secretmem = b.Kind() == KindSecretmem
		b.Free()
	}
	return r
}

// Dumpable reports the process's PR_GET_DUMPABLE value.
func Dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return v != 0, err
}

// hasCapIPCLock reads the effective capability set of this process.
func hasCapIPCLock() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_IPC_LOCK) != 0
		}
	}
	return false
}
