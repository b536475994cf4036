package reliability

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// TestWebhookUnderLoad sends admissions from several TLS clients, each
// opening a new connection every 50 requests, and replaces the serving
// certificate (a Secret-volume ..data swap) half-way: every admission must
// be answered with a patch, no handshake may fail, and once a handshake has
// seen the new certificate none sees the old one again.
func TestWebhookUnderLoad(t *testing.T) {
	testenv.NeedServers(t)
	sz := sizes()
	inj := startInjector(t)
	review := goodReview("load")

	var (
		sent, done  atomic.Int64
		mu          sync.Mutex
		errs        []string
		errCount    int
		handshakes  int
		firstNew    time.Time // first handshake presenting serial 3
		oldAfterNew int       // handshakes presenting serial 2 after firstNew
		swapped     = make(chan struct{})
		swapAt      time.Time
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errCount++
		if len(errs) < 5 {
			errs = append(errs, time.Now().Format("15:04:05.000")+" "+err.Error())
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range sz.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var (
				conn *tls.Conn
				br   *bufio.Reader
			)
			defer func() {
				if conn != nil {
					_ = conn.Close()
				}
			}()
			for i := 0; ; i++ {
				if sent.Add(1) > int64(sz.admissions) {
					return
				}
				if conn == nil || i%50 == 0 {
					if conn != nil {
						_ = conn.Close()
					}
					c, err := tls.Dial("tcp", inj.addr, inj.tlsConfig())
					if err != nil {
						fail(fmt.Errorf("handshake: %w", err))
						conn = nil
						continue
					}
					conn, br = c, bufio.NewReader(c)
					serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
					now := time.Now()
					mu.Lock()
					handshakes++
					switch {
					case serial == 3 && firstNew.IsZero():
						firstNew = now
					case serial == 2 && !firstNew.IsZero() && now.After(firstNew):
						oldAfterNew++
					}
					mu.Unlock()
				}
				r, err := post(conn, br, "application/json", review)
				if err == nil {
					err = requireInjected(r, "load")
				}
				if err != nil {
					fail(err)
					_ = conn.Close()
					conn = nil
					continue
				}
				if n := done.Add(1); n == int64(sz.admissions/2) {
					close(swapped)
				}
			}
		}()
	}
	select {
	case <-swapped:
	case <-time.After(5 * time.Minute):
		t.Fatal("half the admissions did not complete within 5 minutes")
	}
	c, k := inj.ca.leaf(t, 3)
	swapAt = time.Now()
	inj.certs.publish(t, c, k)
	wg.Wait()
	elapsed := time.Since(start)

	// If the load finished before the injector noticed the new files, keep
	// handshaking (briefly) until it does: the swap must take effect.
	if firstNew.IsZero() {
		eventually(15*time.Second, func() bool {
			c, err := tls.Dial("tcp", inj.addr, inj.tlsConfig())
			if err != nil {
				fail(fmt.Errorf("handshake after the swap: %w", err))
				return false
			}
			defer c.Close()
			if c.ConnectionState().PeerCertificates[0].SerialNumber.Int64() == 3 {
				firstNew = time.Now()
				return true
			}
			return false
		})
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d admissions in %s (%.0f/s) over %d clients, %d handshakes; certificate swapped at +%s, first new-certificate handshake %s later",
		done.Load(), elapsed.Round(time.Millisecond), float64(done.Load())/elapsed.Seconds(), sz.clients, handshakes,
		swapAt.Sub(start).Round(time.Millisecond), firstNew.Sub(swapAt).Round(time.Millisecond))
	if errCount > 0 {
		t.Errorf("%d failed admissions or handshakes; first: %v", errCount, errs)
	}
	if done.Load() != int64(sz.admissions) {
		t.Errorf("%d admissions answered, want %d", done.Load(), sz.admissions)
	}
	if firstNew.IsZero() {
		t.Error("no handshake presented the new certificate within 15 s of the swap")
	} else if d := firstNew.Sub(swapAt); d > 12*time.Second {
		t.Errorf("new certificate served %s after the swap, want ≤ 12 s (inotify, or the 2 s poll)", d)
	}
	if oldAfterNew > 0 {
		t.Errorf("%d handshakes presented the old certificate after the new one was served", oldAfterNew)
	}
}
