package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// startTimes is the time from exec to the first credential, per run.
type startTimes struct {
	credletSocket []time.Duration // set1 readable on the socket
	credletFile   []time.Duration // set1 written as a file
	vaultAgent    []time.Duration // set1's template rendered
}

// measureStart starts each agent n times (fresh directories, same role) and
// records when set1 first becomes readable. Polls every millisecond.
func measureStart(e *env, credletBin, vaultBin string, n int) (startTimes, error) {
	var st startTimes
	for range n {
		a, err := e.startCredlet(credletBin, roleStart, time.Second, false)
		if err != nil {
			return st, err
		}
		var sock, file time.Duration
		waitFor(20*time.Second, time.Millisecond, func() bool {
			if a.exited() {
				return true
			}
			if file == 0 && a.fileVersion("set1") > 0 {
				file = time.Since(a.started)
			}
			if sock == 0 && a.socketOK("set1") {
				sock = time.Since(a.started)
			}
			return sock > 0 && file > 0
		})
		_ = a.stop(5 * time.Second)
		if sock == 0 || file == 0 {
			return st, fmt.Errorf("credlet-agent start: no credential within 20s: %s", a.logTail(600))
		}
		st.credletSocket = append(st.credletSocket, sock)
		st.credletFile = append(st.credletFile, file)
		_ = os.RemoveAll(a.dir)
	}
	for range max(3, n/2) {
		a, err := e.startVaultAgent(vaultBin, roleStart, time.Second)
		if err != nil {
			return st, err
		}
		var file time.Duration
		dest := filepath.Join(a.files, "set1")
		waitFor(30*time.Second, time.Millisecond, func() bool {
			if a.exited() {
				return true
			}
			if fi, err := os.Stat(dest); err == nil && fi.Size() > 0 {
				file = time.Since(a.started)
			}
			return file > 0
		})
		_ = a.stop(5 * time.Second)
		if file == 0 {
			return st, fmt.Errorf("vault agent start: no template rendered within 30s: %s", a.logTail(600))
		}
		st.vaultAgent = append(st.vaultAgent, file)
		_ = os.RemoveAll(a.dir)
	}
	slices.Sort(st.credletSocket)
	slices.Sort(st.credletFile)
	slices.Sort(st.vaultAgent)
	return st, nil
}
