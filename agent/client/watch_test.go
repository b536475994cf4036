package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/socketapi"
)

// TestWatchPermanentErrors: a set this agent does not have, or a peer it
// refuses, is reported to the caller's error callback once, and the watch
// ends (its channel closes) instead of retrying forever. A transient error
// (the set not fetched yet) is reported and retried.
func TestWatchPermanentErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     socketapi.Options
		set      string
		sentinel error
	}{
		{name: "not found", set: "nosuch", sentinel: ErrNotFound},
		{name: "forbidden", opts: socketapi.Options{AllowUIDs: []uint32{54321}, AllowGIDs: []uint32{54321}}, set: "acme", sentinel: ErrForbidden},
		{name: "bad name", set: "Bad Name", sentinel: ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAgent(t, tt.opts)
			a.commit(1)
			var mu sync.Mutex
			var errs []error
			c := New(a.Path, fast()...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ch := c.Watch(ctx, tt.set, OnError(func(err error) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}))
			select {
			case cr, ok := <-ch:
				if ok {
					t.Fatalf("delivered %v", cr)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the watch of a permanent error is still retrying after 3s")
			}
			if ctx.Err() != nil {
				t.Fatal("the watch ended only with its context")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(errs) != 1 || !errors.Is(errs[0], tt.sentinel) || !errors.Is(errs[0], ErrWatchStopped) {
				t.Fatalf("errors reported %v, want one matching %v and ErrWatchStopped", errs, tt.sentinel)
			}
		})
	}
}

// TestWatchTransientErrorsReported: while the agent is down the callback
// hears of each failed attempt and the watch goes on, delivering the set
// once the agent is back.
func TestWatchTransientErrorsReported(t *testing.T) {
	a := newAgent(t, socketapi.Options{})
	a.Stop()
	c := New(a.Path, append(fast(), WithWaitTimeout(time.Second))...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reported := make(chan error, 1000)
	ch := c.Watch(ctx, "acme", OnError(func(err error) {
		select {
		case reported <- err:
		default:
		}
	}))
	for range 2 {
		select {
		case err := <-reported:
			if errors.Is(err, ErrWatchStopped) {
				t.Fatalf("a transient error stopped the watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no error reported while the agent is down")
		}
	}
	a.Start()
	a.commit(1)
	select {
	case cr, ok := <-ch:
		if !ok || cr.Version != 1 {
			t.Fatalf("got %v (open %v), want version 1", cr, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("version 1 never delivered after the agent came back")
	}
}
