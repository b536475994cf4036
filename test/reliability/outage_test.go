package reliability

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

var outageFields = []string{"api_key", "api_secret"}

// readyWatch polls /readyz every 200 ms and records every answer that is
// not 200.
type readyWatch struct {
	mu       sync.Mutex
	polls    int
	failures []string
	quit     chan struct{}
	wg       sync.WaitGroup
	stopFn   func()
}

func watchReady(t *testing.T, a *agentProc) *readyWatch {
	w := &readyWatch{quit: make(chan struct{})}
	c := &http.Client{Timeout: 2 * time.Second}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.quit:
				return
			case <-tick.C:
			}
			resp, err := c.Get("http://" + a.listen + "/readyz")
			msg := ""
			if err != nil {
				msg = err.Error()
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					msg = fmt.Sprintf("status %d", resp.StatusCode)
				}
			}
			w.mu.Lock()
			w.polls++
			if msg != "" {
				w.failures = append(w.failures, time.Now().Format("15:04:05.000")+" "+msg)
			}
			w.mu.Unlock()
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { close(w.quit); w.wg.Wait() }) }
	t.Cleanup(stop)
	w.stopFn = stop
	return w
}

func (w *readyWatch) stop() { w.stopFn() }

func (w *readyWatch) requireAlwaysReady(t *testing.T) {
	t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == 0 {
		t.Error("/readyz was never polled")
	}
	if len(w.failures) > 0 {
		t.Errorf("/readyz not ready %d times of %d polls: %v", len(w.failures), w.polls, w.failures[:min(5, len(w.failures))])
	}
}

// outageAgent starts an agent that reaches Vault through a cuttable proxy,
// with socket and file readers and a /readyz watch running.
func outageAgent(t *testing.T, name string, tokenTTL time.Duration) (*agentProc, *testenv.Proxy, string, *readerGroup, *readyWatch) {
	t.Helper()
	path := uniquePath(name)
	putVersion(t, path, 1, outageFields)
	proxy, err := testenv.StartProxy(vault.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	a := startAgent(t, agentOpts{vaultAddr: proxy.URL(), refresh: time.Second, tokenTTL: tokenTTL,
		creds: []string{name + "=secret/" + path}})
	a.waitReady(30 * time.Second)
	waitDelivered(t, a, name)
	readers := newReaders(t)
	for i := range 2 {
		readers.add(fmtName("socket", i, name), socketReader(socketClient(a.socket), name, outageFields))
		readers.add(fmtName("files", i, name), fileReader(filepath.Join(a.secrets, name), outageFields))
	}
	return a, proxy, path, readers, watchReady(t, a)
}

// TestVaultOutage makes Vault unreachable two ways, frozen (SIGSTOP: the
// connection hangs) and cut (the proxy resets every connection), while
// readers read: every read must succeed, /readyz must stay ready, the age
// metric must grow through the outage, and a version written when Vault is
// back must be served within refresh + 1 s (+10% jitter).
func TestVaultOutage(t *testing.T) {
	testenv.NeedServers(t)
	sz := sizes()
	for _, kind := range []string{"sigstop", "proxy-cut"} {
		t.Run(kind, func(t *testing.T) {
			name := "outage" + map[string]string{"sigstop": "stop", "proxy-cut": "cut"}[kind]
			a, proxy, path, readers, ready := outageAgent(t, name, time.Minute)
			begin, end := func() error { return vault.Pause() }, func() error { return vault.Resume() }
			if kind == "proxy-cut" {
				begin = func() error { proxy.Cut(); return nil }
				end = func() error { proxy.Restore(); return nil }
			}
			if err := begin(); err != nil {
				t.Fatal(err)
			}
			ended := false
			t.Cleanup(func() {
				if !ended {
					_ = end()
				}
			})
			time.Sleep(time.Second)
			ageEarly, err := a.metric("credlet_credential_age_seconds", `name="`+name+`"`)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(sz.outage - time.Second)
			ageLate, err := a.metric("credlet_credential_age_seconds", `name="`+name+`"`)
			if err != nil {
				t.Fatal(err)
			}
			if err := end(); err != nil {
				t.Fatal(err)
			}
			ended = true
			back := time.Now()
			// The age gauge is updated every second: allow that much lag.
			if grew := ageLate - ageEarly; grew < (sz.outage - 2*time.Second).Seconds() {
				t.Errorf("credlet_credential_age_seconds grew by %.1fs over a %s outage (%.1f → %.1f)", grew, sz.outage, ageEarly, ageLate)
			}
			if ageLate < (sz.outage - 2*time.Second).Seconds() {
				t.Errorf("credlet_credential_age_seconds = %.1f at the end of a %s outage", ageLate, sz.outage)
			}
			putVersion(t, path, 2, outageFields)
			written := time.Now()
			limit := 1100*time.Millisecond + time.Second // refresh (+10% jitter) + 1 s
			c := socketClient(a.socket)
			if !eventually(limit+5*time.Second, func() bool {
				cr, err := getCredential(c, name)
				return err == nil && cr.Version == 2
			}) {
				t.Fatalf("version 2 not served within %s of Vault coming back\n%s", limit+5*time.Second, a.logTail())
			}
			if took := time.Since(written); took > limit {
				t.Errorf("recovery took %s after the write (%s after Vault came back): want ≤ refresh + 1 s = %s",
					took.Round(time.Millisecond), time.Since(back).Round(time.Millisecond), limit)
			} else {
				t.Logf("recovered in %s after the write", took.Round(time.Millisecond))
			}
			if !eventually(3*time.Second, func() bool {
				age, err := a.metric("credlet_credential_age_seconds", `name="`+name+`"`)
				return err == nil && age < 2.5
			}) {
				t.Error("credlet_credential_age_seconds did not drop below 2.5 s after recovery")
			}
			time.Sleep(300 * time.Millisecond)
			readers.stop()
			readers.requireClean(t, nil)
			ready.requireAlwaysReady(t)
		})
	}
}

// TestTokenExpiryDuringOutage cuts Vault off for longer than the agent's
// token lives: afterwards the agent must log in afresh and serve a new
// version, and no read may fail meanwhile.
func TestTokenExpiryDuringOutage(t *testing.T) {
	testenv.NeedServers(t)
	sz := sizes()
	ttl := 4 * time.Second
	outage := ttl + 3*time.Second
	if sz.full {
		ttl, outage = 15*time.Second, max(sz.outage, 20*time.Second)
	}
	name := "expiry"
	a, proxy, path, readers, ready := outageAgent(t, name, ttl)
	logins := func() float64 {
		v, err := a.metric("credlet_logins_total", `result="success"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := logins()
	proxy.Cut()
	restored := false
	t.Cleanup(func() {
		if !restored {
			proxy.Restore()
		}
	})
	time.Sleep(outage)
	proxy.Restore()
	restored = true
	putVersion(t, path, 2, outageFields)
	written := time.Now()
	c := socketClient(a.socket)
	limit := 1100*time.Millisecond + 2*time.Second // refresh + jitter + a login
	if !eventually(limit+10*time.Second, func() bool {
		cr, err := getCredential(c, name)
		return err == nil && cr.Version == 2
	}) {
		t.Fatalf("version 2 not served after the token expired\n%s", a.logTail())
	}
	if took := time.Since(written); took > limit {
		t.Errorf("after the token expired, version 2 took %s: want ≤ %s", took.Round(time.Millisecond), limit)
	}
	if after := logins(); after <= before {
		t.Errorf("credlet_logins_total{result=success} = %v, was %v: no fresh login after the token expired", after, before)
	}
	time.Sleep(300 * time.Millisecond)
	readers.stop()
	readers.requireClean(t, nil)
	ready.requireAlwaysReady(t)
}
