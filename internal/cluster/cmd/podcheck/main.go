// Command podcheck is the pod tests' probe: a container in a test pod that
// answers, over HTTP on --listen, what a process in that container sees.
// The tests reach it at the pod's address from the node. It reports
// outcomes and sizes, never a credential value.
//
//	GET /self                       uid, gid, effective capabilities, seccomp mode, no_new_privs, root read-only
//	GET /file?path=P                reads P: {"ok":true,"size":N} or {"ok":false,"errno":"EACCES",...}
//	GET /socket?name=N              one agent/client Get: {"ok":true,"version":V} or the agent's status and code
//	GET /burst?name=N&n=100000&c=4  n Gets over c connections: count, errors, seconds
//	GET /loop/start?name=N&file=P   reads N over the socket and P from the tmpfs every 10 ms until /loop/stop
//	GET /loop/stats                 reads, failures and the last failure of the loop
//
// With --once NAME it reads NAME over the socket once and exits instead
// (a Job's work).
//
// Static (CGO_ENABLED=0), no shell.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/credlet/credlet/agent/client"
)

func main() {
	listen := flag.String("listen", ":8080", "HTTP listen address")
	socket := flag.String("socket", os.Getenv("CREDLET_SOCKET"), "agent socket")
	once := flag.String("once", "", "read this credential set over the socket once, print its version and exit (0 on success)")
	flag.Parse()
	if *socket == "" {
		*socket = client.DefaultSocket
	}
	if *once != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cred, err := client.New(*socket).Get(ctx, *once)
		if err != nil {
			fmt.Fprintln(os.Stderr, "podcheck:", err)
			os.Exit(1)
		}
		fmt.Printf("podcheck: read %s version %d\n", *once, cred.Version)
		return
	}
	p := &probe{socket: *socket}
	mux := http.NewServeMux()
	mux.HandleFunc("/self", p.self)
	mux.HandleFunc("/file", p.file)
	mux.HandleFunc("/socket", p.socketGet)
	mux.HandleFunc("/burst", p.burst)
	mux.HandleFunc("/loop/start", p.loopStart)
	mux.HandleFunc("/loop/stop", p.loopStop)
	mux.HandleFunc("/loop/stats", p.loopStats)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	fmt.Printf("podcheck: uid %d listening on %s, socket %s\n", os.Getuid(), *listen, *socket)
	if err := http.ListenAndServe(*listen, mux); err != nil {
		fmt.Fprintln(os.Stderr, "podcheck:", err)
		os.Exit(1)
	}
}

type probe struct {
	socket string

	mu         sync.Mutex
	cancelLoop context.CancelFunc
	loopDone   chan struct{}
	loop       loopStats
}

type loopStats struct {
	FileReads      int64  `json:"file_reads"`
	FileFailures   int64  `json:"file_failures"`
	SocketReads    int64  `json:"socket_reads"`
	SocketFailures int64  `json:"socket_failures"`
	LastFailure    string `json:"last_failure,omitempty"`
	Running        bool   `json:"running"`
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// self reports this process's identity and confinement from /proc.
func (p *probe) self(w http.ResponseWriter, _ *http.Request) {
	status := map[string]string{}
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok {
				status[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	rootRO := false
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && f[4] == "/" {
				rootRO = strings.Split(f[5], ",")[0] == "ro"
			}
		}
	}
	werr := os.WriteFile("/podcheck-write-test", []byte("x"), 0o600)
	reply(w, map[string]any{
		"uid": os.Getuid(), "gid": os.Getgid(), "groups": status["Groups"],
		"cap_eff": status["CapEff"], "cap_prm": status["CapPrm"], "cap_bnd": status["CapBnd"],
		"seccomp": status["Seccomp"], "no_new_privs": status["NoNewPrivs"],
		"root_read_only": rootRO, "root_write_error": errnoName(werr),
	})
}

func errnoName(err error) string {
	var en syscall.Errno
	switch {
	case err == nil:
		return ""
	case errors.As(err, &en):
		switch en {
		case syscall.EACCES:
			return "EACCES"
		case syscall.EPERM:
			return "EPERM"
		case syscall.ENOENT:
			return "ENOENT"
		case syscall.EROFS:
			return "EROFS"
		}
		return en.Error()
	}
	return err.Error()
}

func (p *probe) file(w http.ResponseWriter, r *http.Request) {
	b, err := os.ReadFile(r.URL.Query().Get("path"))
	if err != nil {
		reply(w, map[string]any{"ok": false, "errno": errnoName(err), "error": err.Error()})
		return
	}
	reply(w, map[string]any{"ok": true, "size": len(b)})
}

func (p *probe) client() *client.Client {
	return client.New(p.socket, client.WithAttempts(1), client.WithTimeout(5*time.Second))
}

func (p *probe) socketGet(w http.ResponseWriter, r *http.Request) {
	cred, err := p.client().Get(r.Context(), r.URL.Query().Get("name"))
	if err != nil {
		out := map[string]any{"ok": false, "error": err.Error()}
		var ae *client.APIError
		if errors.As(err, &ae) {
			out["status"], out["code"] = ae.Status, ae.Code
		}
		reply(w, out)
		return
	}
	reply(w, map[string]any{"ok": true, "version": cred.Version, "fields": cred.FieldNames()})
}

// burst runs n Gets spread over c goroutines, each with its own client.
func (p *probe) burst(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	n, _ := strconv.Atoi(q.Get("n"))
	c, _ := strconv.Atoi(q.Get("c"))
	if n <= 0 || n > 1_000_000 || c <= 0 || c > 64 {
		http.Error(w, "n must be 1..1000000 and c 1..64", http.StatusBadRequest)
		return
	}
	var done, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for i := range c {
		share := n / c
		if i < n%c {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := p.client()
			for range share {
				if _, err := cl.Get(r.Context(), name); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	out := map[string]any{"reads": done.Load(), "errors": failed.Load(), "seconds": time.Since(start).Seconds()}
	if e := firstErr.Load(); e != nil {
		out["first_error"] = e
	}
	reply(w, out)
}

// loopStart reads the credential over the socket (through agent/client,
// which retries transient failures within each call's 10 s budget) and the
// file every 10 ms, counting failures, until loopStop.
func (p *probe) loopStart(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, file := q.Get("name"), q.Get("file")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancelLoop != nil {
		http.Error(w, "a loop is running", http.StatusConflict)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancelLoop, p.loopDone = cancel, make(chan struct{})
	p.loop = loopStats{Running: true}
	cl := client.New(p.socket, client.WithWaitTimeout(10*time.Second))
	go func() {
		defer close(p.loopDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if file != "" {
				_, err := os.ReadFile(file)
				p.count(&p.loop.FileReads, &p.loop.FileFailures, err, "file")
			}
			if name != "" {
				gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Get(gctx, name)
				gcancel()
				if ctx.Err() != nil {
					return
				}
				p.count(&p.loop.SocketReads, &p.loop.SocketFailures, err, "socket")
			}
		}
	}()
	reply(w, map[string]any{"started": true})
}

func (p *probe) count(reads, failures *int64, err error, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*reads++
	if err != nil {
		*failures++
		p.loop.LastFailure = what + ": " + err.Error()
	}
}

func (p *probe) loopStop(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	stop, done := p.cancelLoop, p.loopDone
	p.cancelLoop = nil
	p.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	p.loopStats(w, nil)
}

func (p *probe) loopStats(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	s := p.loop
	s.Running = p.cancelLoop != nil
	p.mu.Unlock()
	reply(w, s)
}
