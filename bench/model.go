package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/fleet"
	"github.com/credlet/credlet/internal/testenv"
	"github.com/credlet/credlet/internal/vault/auth"
	"github.com/credlet/credlet/internal/vault/lease"
)

// modelResult is the fleet model's measurement: M simulated agents, each
// with its own Kubernetes-auth token, polling 3 sets at refresh.
type modelResult struct {
	agents     int
	sets       int
	refresh    time.Duration
	window     time.Duration
	requests   int            // every request Vault audited in the window (fleet and prober)
	fleetKinds map[string]int // the fleet's requests in the window by kind
	auditBytes int64          // the audit log's growth in the window
	cpu        float64        // Vault CPU seconds in the window
	granted    time.Duration  // the token TTL the fleet's logins were granted
	idleProbe  []time.Duration
	loadProbe  []time.Duration
	probeErrs  int
	saturation loadResult // closed-loop metadata reads with the fleet stopped
	satCPU     float64
}

// proberInterval paces the latency prober: one metadata read every 20 ms.
const proberInterval = 20 * time.Millisecond

// benchModel runs the fleet model (see modelResult) for window after every
// agent has started (spread over one refresh interval, as pods started at
// different times) and one more interval has passed; a prober with its own
// token reads metadata alongside. Then, with the fleet stopped, closed-loop
// metadata reads find what this Vault serves at most.
func (b *bench) benchModel(ctx context.Context, fe *fleetEnv, m int, refresh, window time.Duration, firstIdentity int) (modelResult, error) {
	res := modelResult{agents: m, sets: len(fleetSets), refresh: refresh, window: window, fleetKinds: map[string]int{}}
	creds, err := fleetCredspecs()
	if err != nil {
		return res, err
	}
	root, err := os.MkdirTemp(b.dir, "m")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	var agents []fleet.Agent
	for i := range m {
		dir := filepath.Join(root, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return res, err
		}
		tok, err := fe.writeToken(dir, firstIdentity+i)
		if err != nil {
			return res, err
		}
		agents = append(agents, fleet.Agent{Name: fmt.Sprint(i), Creds: creds, Login: auth.Kubernetes(fleetRole, "kubernetes", tok)})
	}
	probeTok, err := fe.proberToken(ctx, root, firstIdentity+m)
	if err != nil {
		return res, err
	}
	probeReq := getRequest("/v1/"+fleetMetaPath(fleetProbeSet), "X-Vault-Token: "+probeTok)
	res.idleProbe, _ = probe(ctx, fe.vault.HostPort(), probeReq, 3*time.Second)

	f, err := fleet.New(agents, fleet.Options{Addr: fe.vault.Addr, Refresh: refresh, Stagger: refresh})
	if err != nil {
		return res, err
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	stopped := false
	stopFleet := func() {
		if !stopped {
			stop()
			<-done
			stopped = true
		}
	}
	defer stopFleet()
	wctx, cancel := context.WithTimeout(ctx, 2*refresh+time.Minute)
	defer cancel()
	if err := f.WaitVersion(wctx, 1); err != nil {
		return res, err
	}
	// Every agent started at least one refresh interval ago and has polled.
	if !sleepCtx(ctx, refresh) {
		return res, ctx.Err()
	}
	from := fileSize(fe.auditPath)
	cpu0, err := cpuSeconds(fe.vault.PID())
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	res.loadProbe, res.probeErrs = probe(ctx, fe.vault.HostPort(), probeReq, window)
	cpu1, err := cpuSeconds(fe.vault.PID())
	if err != nil {
		return res, err
	}
	to := fileSize(fe.auditPath)
	res.window = time.Since(t0)
	res.cpu = cpu1 - cpu0
	res.auditBytes = to - from
	stopFleet()

	evs, err := readAuditRange(fe.auditPath, from, to)
	if err != nil {
		return res, err
	}
	for _, e := range evs {
		if e.response {
			if isLogin(e.path) && e.granted > 0 {
				res.granted = e.granted
			}
			continue
		}
		res.requests++
		if e.role == fleetRole && !strings.HasSuffix(e.path, "/"+fleetProbeSet) {
			res.fleetKinds[requestKind(e.path)]++
		}
	}
	if res.granted == 0 {
		res.granted = fe.grantedTTL
	}

	// Saturation: the prober's read, closed loop, 8 connections, the fleet
	// stopped. The load generator shares the two cores with Vault.
	c0, _ := cpuSeconds(fe.vault.PID())
	res.saturation = runLoad(ctx, loadSpec{name: "saturation", clients: 8, warmup: 20, total: 10_000_000, maxTime: 5 * time.Second,
		dial: tcpDialer(fe.vault.HostPort()), request: probeReq, check: statusIs(200)})
	c1, _ := cpuSeconds(fe.vault.PID())
	res.satCPU = c1 - c0
	return res, nil
}

func fleetMetaPath(set string) string {
	return testenv.KVMount + "/metadata/partners/" + fleetPartner + "/" + set
}

// proberToken logs identity i in through Kubernetes auth, as an agent
// would, and returns the token, so the prober's reads cost what the
// fleet's do (the same templated policy). It records the granted TTL.
func (fe *fleetEnv) proberToken(ctx context.Context, dir string, i int) (string, error) {
	pd := filepath.Join(dir, "prober")
	if err := os.Mkdir(pd, 0o700); err != nil {
		return "", err
	}
	tok, err := fe.writeToken(pd, i)
	if err != nil {
		return "", err
	}
	s, err := auth.Kubernetes(fleetRole, "kubernetes", tok).Login(ctx, fe.vault.Client())
	if err != nil {
		return "", fmt.Errorf("prober login: %w", err)
	}
	fe.grantedTTL = time.Duration(s.Auth.LeaseDuration) * time.Second
	return s.Auth.ClientToken, nil
}

// probe sends req to Vault every proberInterval for d on one keep-alive
// connection and returns the latencies of the 200 answers, sorted, and the
// failures.
func probe(ctx context.Context, hostPort string, req []byte, d time.Duration) ([]time.Duration, int) {
	c := newConn(tcpDialer(hostPort))
	defer c.close()
	var lat []time.Duration
	failed := 0
	end := time.Now().Add(d)
	next := time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		t := time.Now()
		status, _, err := c.do(req)
		if err != nil || status != 200 {
			failed++
		} else {
			lat = append(lat, time.Since(t))
		}
		next = next.Add(proberInterval)
		time.Sleep(time.Until(next))
	}
	slices.Sort(lat)
	return lat, failed
}

// fleetModel is what the measurements say one pod costs Vault.
type fleetModel struct {
	perSetPoll   float64 // Vault requests per set per refresh interval (metadata, and data when a version is new)
	upkeepPerPod float64 // token requests per pod per second (renewals at the agent's 0.8 of the TTL)
	cpuPerReq    float64 // Vault CPU seconds per request
	auditPerReq  float64 // audit-log bytes per request
	saturation   float64 // requests/s this Vault served at most
}

// model derives the per-pod costs from a measurement.
func (r modelResult) model() fleetModel {
	var m fleetModel
	polls := float64(r.agents*r.sets) * r.window.Seconds() / r.refresh.Seconds()
	if polls > 0 {
		m.perSetPoll = float64(r.fleetKinds["metadata"]+r.fleetKinds["data"]+r.fleetKinds["transit"]) / polls
	}
	// Renewals measured in the window, or, when the TTL is longer than the
	// window, the renewal rate the agent's schedule gives that TTL.
	renew := float64(r.fleetKinds["renew"]+r.fleetKinds["login"]+r.fleetKinds["lookup"]) / float64(max(r.agents, 1)) / r.window.Seconds()
	if r.granted > 0 {
		renew = max(renew, 1/(lease.DefaultRenewAt*r.granted.Seconds()))
	}
	m.upkeepPerPod = renew
	if r.requests > 0 {
		m.cpuPerReq = r.cpu / float64(r.requests)
		m.auditPerReq = float64(r.auditBytes) / float64(r.requests)
	}
	m.saturation = r.saturation.perSecond()
	return m
}

// reqPerSec is the Vault request rate of pods agents with sets sets each at
// refresh.
func (m fleetModel) reqPerSec(pods, sets int, refresh time.Duration) float64 {
	return float64(pods) * (float64(sets)*m.perSetPoll/refresh.Seconds() + m.upkeepPerPod)
}

func (m fleetModel) cores(reqPerSec float64) float64 { return reqPerSec * m.cpuPerReq }

func (m fleetModel) auditGBPerDay(reqPerSec float64) float64 {
	return reqPerSec * m.auditPerReq * 86400 / 1e9
}

// maxPods is how many pods with sets sets at refresh this Vault serves
// before it saturates.
func (m fleetModel) maxPods(sets int, refresh time.Duration) int {
	per := m.reqPerSec(1, sets, refresh)
	if per <= 0 {
		return 0
	}
	return int(m.saturation / per)
}
