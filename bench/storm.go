package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credlet/credlet/internal/oneline"
)

// stormResult is one login storm: n agents started at once, one auth
// method.
type stormResult struct {
	method   string
	n        int
	spawn    time.Duration   // exec of the first to exec of the last agent
	ready    []time.Duration // per agent, storm start → /v1/health ready, sorted
	fromExec []time.Duration // per agent, its own exec → ready, sorted
	notReady int
	logins   []time.Duration // Vault's own login latency (audit: request line → response line), sorted
	loginErr int             // login responses carrying an error
	errMost  string          // the two most frequent of those errors, and how often

	reviews float64       // TokenReview requests the apiserver served during the storm
	cpu     float64       // Vault CPU seconds, storm start → all ready
	wall    time.Duration // storm start → the last agent ready
}

// stormPoll is how often each agent's /v1/health is asked while not ready.
const stormPoll = 100 * time.Millisecond

// loginStorm starts n credlet-agent processes at once, each logging in with
// its own ServiceAccount's token through method ("kubernetes" or "jwt") and
// fetching the three sets; it measures until every one is ready and stops
// them all, whatever happened.
func (b *bench) loginStorm(ctx context.Context, fe *fleetEnv, method string, n int, timeout time.Duration) (stormResult, error) {
	res := stormResult{method: method, n: n}
	root, err := os.MkdirTemp(b.dir, "s")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	type member struct {
		args   []string
		dir    string
		socket string
	}
	members := make([]member, n)
	for i := range members {
		dir := filepath.Join(root, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return res, err
		}
		tok, err := fe.writeToken(dir, i)
		if err != nil {
			return res, err
		}
		m := member{dir: dir, socket: filepath.Join(dir, "a.sock")}
		m.args = []string{"run", "--auth", method, "--role", fleetRole, "--token-file", tok,
			"--vault-addr", fe.vault.Addr, "--socket", m.socket, "--secrets-dir", filepath.Join(dir, "s"),
			"--listen", "", "--audit-file", filepath.Join(dir, "audit.log"), "--log-level", "warn"}
		for _, c := range fleetCreds() {
			m.args = append(m.args, "--credential", c)
		}
		members[i] = m
	}
	reviews0, err := tokenReviews(ctx, fe.kube)
	if err != nil {
		return res, err
	}
	cpu0, err := cpuSeconds(fe.vault.PID())
	if err != nil {
		return res, err
	}
	auditFrom := fileSize(fe.auditPath)

	procs := make([]*proc, 0, n)
	defer func() { stopProcs(procs) }()
	readyAt := make([]time.Duration, n)
	var wg sync.WaitGroup
	pollCtx, stopPoll := context.WithTimeout(ctx, timeout)
	defer stopPoll()
	t0 := time.Now()
	for i, m := range members {
		exe, args := withoutIPCLock(true, b.o.agentBin, m.args)
		p, err := startProc(fmt.Sprintf("credlet-agent (storm %s %d)", method, i), filepath.Join(m.dir, "agent.log"), cleanEnv(), exe, args...)
		if err != nil {
			stopPoll()
			wg.Wait()
			return res, err
		}
		procs = append(procs, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			readyAt[i] = pollReady(pollCtx, p, m.socket, t0)
		}()
	}
	res.spawn = time.Since(t0)
	wg.Wait()
	res.wall = time.Since(t0)
	cpu1, cpuErr := cpuSeconds(fe.vault.PID())
	reviews1, revErr := tokenReviews(ctx, fe.kube)
	if err := errors.Join(cpuErr, revErr); err != nil {
		return res, err
	}
	res.cpu, res.reviews = cpu1-cpu0, reviews1-reviews0
	var firstBad *proc
	for i, d := range readyAt {
		if d > 0 {
			res.ready = append(res.ready, d)
			res.fromExec = append(res.fromExec, d-procs[i].started.Sub(t0))
		} else {
			res.notReady++
			if firstBad == nil {
				firstBad = procs[i]
			}
		}
	}
	slices.Sort(res.ready)
	slices.Sort(res.fromExec)
	if len(res.ready) > 0 {
		res.wall = res.ready[len(res.ready)-1]
	}
	evs, err := readAuditRange(fe.auditPath, auditFrom, -1)
	if err != nil {
		return res, err
	}
	res.logins, res.loginErr, res.errMost = loginLatencies(evs, "auth/"+method+"/login")
	if res.notReady > 0 {
		return res, fmt.Errorf("%d of %d agents (%s) not ready after %s; first: %s", res.notReady, n, method, timeout, firstBad.logTail(300))
	}
	return res, nil
}

// pollReady asks the agent's socket for /v1/health every stormPoll until it
// answers ready, and returns the time since t0 (0: not before ctx ended or
// the agent exited).
func pollReady(ctx context.Context, p *proc, socket string, t0 time.Time) time.Duration {
	c := newConn(unixDialer(socket))
	defer c.close()
	req := getRequest("/v1/health")
	for {
		status, body, err := c.do(req)
		if err == nil && status == 200 && bytes.Contains(body, []byte(`"ready":true`)) {
			return time.Since(t0)
		}
		if p.exited() {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(stormPoll):
		}
	}
}

// stopProcs stops every process at once (SIGTERM, SIGKILL after 5 s).
func stopProcs(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.stop(5 * time.Second) }()
	}
	wg.Wait()
}

// loginLatencies pairs the request and response lines of each login at
// path by request id: Vault's own time for the login (for Kubernetes auth,
// the TokenReview round trip included). It also counts failed logins and
// names the two most frequent errors.
func loginLatencies(evs []auditEvent, path string) (lat []time.Duration, failed int, most string) {
	sent := map[string]time.Time{}
	errs := map[string]int{}
	for _, e := range evs {
		if e.path != path || e.id == "" {
			continue
		}
		if !e.response {
			sent[e.id] = e.t
			continue
		}
		if e.failed {
			failed++
			errs[e.errMsg]++
		}
		if t, ok := sent[e.id]; ok {
			lat = append(lat, e.t.Sub(t))
		}
	}
	slices.Sort(lat)
	type count struct {
		msg string
		n   int
	}
	var counts []count
	for msg, n := range errs {
		counts = append(counts, count{msg, n})
	}
	slices.SortFunc(counts, func(a, b count) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.msg, b.msg)
	})
	var top []string
	for _, c := range counts[:min(2, len(counts))] {
		top = append(top, fmt.Sprintf("%q ×%d", oneline.Of(c.msg, 300), c.n))
	}
	most = strings.Join(top, ", ")
	return lat, failed, most
}
