package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The floor: the least any Go server can do for a keep-alive HTTP/1.1 read
// on a Unix socket. It reads each request head and writes a fixed answer
// of the same size as credlet's, with nothing else: no parsing beyond the
// blank line, no peer check, no lookup, no audit, no metrics. Measured
// with the same client in the same run, it shows how much of a read's
// latency is the server's and how much is the machine's (system calls,
// scheduler wake-ups, the load generator sharing the cores).
//
// It runs as a child process (the bench binary started with floorArg), so
// it has its own runtime as the agent has.

const floorArg = "-serve-floor"

// serveFloor serves on path until killed (it returns only on an error);
// bodyLen is the answer's size.
func serveFloor(path string, bodyLen int) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	body := bytes.Repeat([]byte{'x'}, bodyLen)
	answer := append([]byte("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: application/json\r\nEtag: \"1\"\r\nContent-Length: "+
		strconv.Itoa(bodyLen)+"\r\n\r\n"), body...)
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReaderSize(c, 4096)
			for {
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 { // the blank line ending the head
						break
					}
				}
				if _, err := c.Write(answer); err != nil {
					return
				}
			}
		}()
	}
}

// floorMain is main for the child: bench -serve-floor PATH BODYLEN.
func floorMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: credlet-bench -serve-floor SOCKET BODY_BYTES")
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "bench floor: body size %q: want a byte count\n", args[1])
		return 2
	}
	err = serveFloor(args[0], n) // serves until killed
	fmt.Fprintln(os.Stderr, "bench floor:", err)
	return 1
}

// startFloor starts the floor server as a child process and waits for its
// socket.
func startFloor(dir string, bodyLen int) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	sock := filepath.Join(dir, "floor.sock")
	p, err := startProc("floor", filepath.Join(dir, "floor.log"), cleanEnv(), self, floorArg, sock, strconv.Itoa(bodyLen))
	if err != nil {
		return nil, "", err
	}
	if !waitFor(10*time.Second, 10*time.Millisecond, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		_ = p.stop(time.Second)
		return nil, "", fmt.Errorf("floor server did not listen: %s", p.logTail(300))
	}
	return p, sock, nil
}

// pinProcess sets the CPU affinity of every thread of pid (0: this
// process) to set. Threads created later inherit it from their creator.
// Go's runtime notices the change and adjusts GOMAXPROCS within about a
// second.
func pinProcess(pid int, set unix.CPUSet) error {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
		}
	}
	return errors.Join(errs...)
}

// pinned runs fn with server pid on CPU 0 and this process (the load
// generator) on CPU 1, then gives both every CPU this process had.
func pinned(pid int, fn func()) error {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return err
	}
	if all.Count() < 2 || !all.IsSet(0) || !all.IsSet(1) {
		return fmt.Errorf("pinned runs need CPUs 0 and 1; this process may use %d CPUs", all.Count())
	}
	defer func() { _ = pinProcess(0, all); _ = pinProcess(pid, all) }()
	if err := pinProcess(0, cpuSet(1)); err != nil {
		return fmt.Errorf("pin the load generator: %w", err)
	}
	if err := pinProcess(pid, cpuSet(0)); err != nil {
		return fmt.Errorf("pin the server: %w", err)
	}
	time.Sleep(2500 * time.Millisecond) // the runtimes adjust GOMAXPROCS to one CPU
	fn()
	return nil
}

func cpuSet(cpus ...int) unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return set
}

// The admission floor: net/http over TLS, as credlet-injector serves, doing
// nothing but read the body and write a fixed AdmissionReview answer with a
// patch of credlet's size. What the HTTP and TLS stack alone cost here.

const tlsFloorArg = "-serve-tls-floor"

// tlsFloorPatchBytes is about credlet-injector's patch for the bench pod.
const tlsFloorPatchBytes = 2482

func serveTLSFloor(addr, certFile, keyFile string) error {
	patch := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'['}, tlsFloorPatchBytes*3/4))
	answer := []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"floor","allowed":true,"patch":"` +
		patch + `","patchType":"JSONPatch","status":{"metadata":{},"code":200}}}` + "\n")
	srv := &http.Server{
		Addr:         addr,
		TLSConfig:    &tls.Config{MinVersion: tls.VersionTLS12},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1, as the bench's clients speak
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
			_, _ = w.Write(answer)
		}),
	}
	return srv.ListenAndServeTLS(certFile, keyFile)
}

// tlsFloorMain is main for the child: bench -serve-tls-floor ADDR CERT KEY.
func tlsFloorMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: credlet-bench -serve-tls-floor ADDR CERT_FILE KEY_FILE")
		return 2
	}
	fmt.Fprintln(os.Stderr, "bench tls floor:", serveTLSFloor(args[0], args[1], args[2])) // serves until killed
	return 1
}

// startTLSFloor starts the admission floor like an injector.
func startTLSFloor(_, dir string, ca *testCA, _ string, extraEnv []string) (*injector, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	certFile, keyFile, err := ca.writeLeaf(dir, 4)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	inj := &injector{addr: fmt.Sprintf("127.0.0.1:%d", port), path: credletMutatePath}
	p, err := startProc("floor", filepath.Join(dir, "tls-floor.log"), append(cleanEnv(), extraEnv...), self,
		tlsFloorArg, inj.addr, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	inj.proc = p
	return inj, nil
}
