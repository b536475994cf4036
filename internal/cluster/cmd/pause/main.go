// Command pause is the pod sandbox's process in the test cluster's pause
// image, like Kubernetes' own pause: it holds the pod's namespaces, reaps
// zombies when it is the pod's PID 1 (shareProcessNamespace), and exits 0 on
// SIGINT or SIGTERM. Static (CGO_ENABLED=0), no shell.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
