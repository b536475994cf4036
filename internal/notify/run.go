package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/credlet/credlet/internal/store"
)

// rotation is one new version to announce.
type rotation struct {
	name    string
	version int
}

// ErrNoProcess is wrapped when no process has the configured name.
var ErrNoProcess = errors.New("no process to signal")

// Run announces every new version committed to st after a set's first one,
// until ctx ends: a version whose values differ from the one before (a
// Transit rewrap writes the same values as a new version: nothing changed
// for the app). It returns nil on cancel.
func (n *Notifier) Run(ctx context.Context, st *store.Store) error {
	sub := st.Subscribe()
	defer sub.Close()
	return n.RunOn(ctx, sub.Updated(), func() map[string]int {
		out := map[string]int{}
		for _, s := range st.Status() {
			out[s.Name] = s.ValuesVersion // a rewrap (same values) is no news
		}
		return out
	})
}

// RunOn announces new versions as versions reports them, checking after
// every signal on updated. The agent feeds it from the file sink when files
// are delivered (so an app reloading on the signal finds the new files) and
// from the store otherwise.
func (n *Notifier) RunOn(ctx context.Context, updated <-chan struct{}, versions func() map[string]int) error {
	seen := map[string]int{}
	n.changes(versions(), seen) // what is there already is not news
	if n.started != nil {
		n.started()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-updated:
		}
		rs := n.changes(versions(), seen)
		if len(rs) == 0 {
			continue
		}
		if n.url == "" {
			n.deliver(ctx, "signal", rs, func(ctx context.Context) error { return n.signal() })
			continue
		}
		for _, r := range rs {
			n.deliver(ctx, "http", []rotation{r}, func(ctx context.Context) error { return n.post(ctx, r) })
		}
	}
}

// changes returns the sets whose version moved on since seen, and records
// the new versions. A set's first version is recorded, not returned.
func (n *Notifier) changes(current map[string]int, seen map[string]int) []rotation {
	var out []rotation
	names := make([]string, 0, len(current))
	for name := range current {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := current[name]
		if v == 0 || v == seen[name] {
			continue
		}
		if seen[name] != 0 {
			out = append(out, rotation{name, v})
		}
		seen[name] = v
	}
	return out
}

// deliver runs send with retries and backoff until it succeeds, the
// attempts run out or ctx ends.
func (n *Notifier) deliver(ctx context.Context, kind string, rs []rotation, send func(context.Context) error) {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.name + "@" + strconv.Itoa(r.version)
	}
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		err := send(ctx)
		if err == nil {
			n.log.Info("notified the app of new credentials", "notify", kind, "target", n.target(), "credentials", names, "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= maxAttempts {
			n.log.Error("notify: giving up", "notify", kind, "target", n.target(), "credentials", names, "attempts", attempt, "error", err.Error())
			return
		}
		n.log.Warn("notify failed; retrying", "notify", kind, "target", n.target(), "credentials", names,
			"attempt", attempt, "retry_in", delay.String(), "error", err.Error())
		t := n.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		delay = min(delay*2, retryMax)
	}
}

func (n *Notifier) target() string {
	if n.url != "" {
		return n.url
	}
	return n.sig.String() + " to " + n.comm
}

// signal sends the signal to every process named n.comm, except this one.
func (n *Notifier) signal() error {
	pids, err := n.findProcesses()
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("%w named %q in %s (is shareProcessNamespace set on the pod?)", ErrNoProcess, n.comm, n.proc)
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, n.sig); err != nil {
			errs = append(errs, fmt.Errorf("kill %d %s: %w", pid, n.sig, err))
		}
	}
	return errors.Join(errs...)
}

func (n *Notifier) findProcesses() ([]int, error) {
	d, err := os.Open(n.proc)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.Readdirnames(maxProcsRead)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e)
		if err != nil || pid == self {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(n.proc, e, "comm"))
		if err != nil {
			continue // gone meanwhile
		}
		if strings.TrimSuffix(string(comm), "\n") == n.comm {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// post sends {"name","version"} to the hook.
func (n *Notifier) post(ctx context.Context, r rotation) error {
	body := []byte(`{"name":` + strconv.Quote(r.name) + `,"version":` + strconv.Itoa(r.version) + `}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "credlet-agent")
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("hook answered %d", resp.StatusCode)
	}
	return nil
}
