package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/socketapi"
	"github.com/credlet/credlet/internal/store"
	"github.com/credlet/credlet/internal/testenv/sockagent"
)

type agent struct{ *sockagent.Agent }

func newAgent(t *testing.T, opts socketapi.Options) agent {
	return agent{sockagent.Start(t, []string{"acme", "pending"}, opts)}
}

func (a agent) commit(v int) {
	s := strconv.Itoa(v)
	a.Commit("acme", store.Meta{Version: v, FetchedAt: time.Unix(1700000000+int64(v), 0)},
		map[string][]byte{"api_key": []byte("FAKE-api-key-v" + s), "api_secret": []byte("FAKE-secret-v" + s)})
}

func fast() []Option {
	return []Option{WithBackoff(5*time.Millisecond, 20*time.Millisecond), WithLogger(slog.New(slog.DiscardHandler))}
}

func TestGet(t *testing.T) {
	a := newAgent(t, socketapi.Options{})
	a.commit(3)
	c := New(a.Path, fast()...)
	cred, err := c.Get(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Name != "acme" || cred.Version != 3 || cred.Fields["api_key"] != "FAKE-api-key-v3" ||
		!cred.FetchedAt.Equal(time.Unix(1700000003, 0)) || cred.ExpiresAt != nil {
		t.Fatalf("got %s %d %v", cred.Name, cred.Version, cred.FetchedAt)
	}
	if v, ok := cred.Field("api_secret"); !ok || v != "FAKE-secret-v3" {
		t.Fatalf("Field(api_secret) = %q, %v", v, ok)
	}
	list, err := c.List(context.Background())
	if err != nil || len(list) != 2 || list[0].Name != "acme" || list[0].Version != 3 || list[1].Version != 0 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	h, err := c.Health(context.Background())
	if err != nil || h.Ready || h.Credentials["acme"].Version != 3 || h.Credentials["pending"].Version != 0 {
		t.Fatalf("Health = %+v, %v", h, err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     socketapi.Options
		set      string
		want     error
		wantCode string
		retried  bool
	}{
		{name: "not found", set: "nope", want: ErrNotFound, wantCode: "not_found"},
		{name: "bad name", set: "Not Valid", want: ErrBadRequest, wantCode: "bad_request"},
		{name: "not ready", set: "pending", want: ErrNotReady, wantCode: "not_ready", retried: true},
		{name: "forbidden", opts: socketapi.Options{AllowUIDs: []uint32{54321}}, set: "acme", want: ErrForbidden, wantCode: "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAgent(t, tt.opts)
			a.commit(1)
			c := New(a.Path, append(fast(), WithAttempts(4), WithBackoff(40*time.Millisecond, 40*time.Millisecond))...)
			start := time.Now()
			_, err := c.Get(context.Background(), tt.set)
			took := time.Since(start)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != tt.wantCode || ae.Message == "" {
				t.Fatalf("err = %#v, want an APIError with code %s", err, tt.wantCode)
			}
			// 3 retries of at least 20ms each (jitter halves 40ms at most).
			if tt.retried && took < 60*time.Millisecond {
				t.Errorf("%v gave up after %v: a transient error must be retried", tt.want, took)
			}
			if !tt.retried && took > 30*time.Millisecond {
				t.Errorf("%v took %v: a permanent error must not be retried", tt.want, took)
			}
			for _, other := range []error{ErrNotFound, ErrNotReady, ErrForbidden, ErrBadRequest} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("err also matches %v", other)
				}
			}
		})
	}
}

// TestAgentStartsLate: Get keeps trying while the socket is missing and
// succeeds once the agent is up.
func TestAgentStartsLate(t *testing.T) {
	a := newAgent(t, socketapi.Options{})
	a.commit(1)
	a.Stop()
	started := make(chan struct{})
	go func() {
		defer close(started)
		time.Sleep(150 * time.Millisecond)
		a.Start()
	}()
	c := New(a.Path, WithAttempts(50), WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	cred, err := c.Get(context.Background(), "acme")
	<-started
	if err != nil || cred.Version != 1 {
		t.Fatalf("Get = %v, %v", cred, err)
	}

	// With the agent gone for good, the error says where it looked.
	a.Stop()
	_, err = New(a.Path, append(fast(), WithAttempts(2))...).Get(context.Background(), "acme")
	if err == nil || !strings.Contains(err.Error(), a.Path) {
		t.Fatalf("Get without an agent = %v, want an error naming %s", err, a.Path)
	}
}

func TestGetHonoursContext(t *testing.T) {
	a := newAgent(t, socketapi.Options{})
	c := New(a.Path, WithAttempts(1000), WithBackoff(10*time.Millisecond, 10*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "pending")
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("Get = %v after %v: want ErrNotReady soon after the context ends", err, time.Since(start))
	}
}

func TestWatch(t *testing.T) {
	a := newAgent(t, socketapi.Options{})
	a.commit(1)
	var logs bytes.Buffer
	c := New(a.Path, WithBackoff(5*time.Millisecond, 50*time.Millisecond), WithWaitTimeout(time.Second),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, "acme")
	next := func(want int) {
		t.Helper()
		select {
		case cred, ok := <-ch:
			if !ok || cred.Version != want || cred.Fields["api_key"] != "FAKE-api-key-v"+strconv.Itoa(want) {
				t.Fatalf("got %v (open %v), want version %d", cred, ok, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("version %d never delivered", want)
		}
	}
	next(1)
	a.commit(2)
	next(2)
	a.commit(3)
	a.commit(4)
	// The watcher may wake for 3 before 4 is committed, or see only 4;
	// it never goes back and ends on the newest.
	for v := 0; v != 4; {
		select {
		case cred := <-ch:
			if cred.Version <= 2 || cred.Version > 4 || cred.Version <= v {
				t.Fatalf("after 2 got version %d (previous %d)", cred.Version, v)
			}
			v = cred.Version
		case <-time.After(10 * time.Second):
			t.Fatal("version 4 never delivered")
		}
	}

	// The agent restarts: the watcher reconnects and carries on.
	a.Stop()
	time.Sleep(100 * time.Millisecond)
	a.Start()
	a.commit(5)
	next(5)
	if strings.Contains(logs.String(), "FAKE") {
		t.Fatalf("values in the watcher's logs:\n%s", logs.String())
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a version after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestCredentialRedaction(t *testing.T) {
	exp := time.Unix(1800000000, 0).UTC()
	c := &Credential{Name: "acme", Version: 7, Fields: map[string]string{"api_key": "FAKE-api-key-123", "b": "FAKE-b"}, ExpiresAt: &exp}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("got", "cred", c, "value", *c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{
		fmt.Sprint(c), fmt.Sprint(*c), fmt.Sprintf("%v %+v %#v %s %q %x %d", c, c, c, c, c, c, c),
		fmt.Sprintf("%v %+v %#v", *c, *c, *c), c.String(), logs.String(), string(js),
	}
	for _, o := range outs {
		if strings.Contains(o, "FAKE") {
			t.Fatalf("a value is printed: %s", o)
		}
		if !strings.Contains(o, "acme") || !strings.Contains(o, "REDACTED") {
			t.Fatalf("output lacks the name or the redaction mark: %s", o)
		}
	}
	if !strings.Contains(c.String(), "v7") || !strings.Contains(c.String(), "api_key b") {
		t.Fatalf("String %q should name version and fields", c.String())
	}
}
