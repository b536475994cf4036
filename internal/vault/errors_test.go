package vault

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

func respErr(code int, msgs ...string) error {
	return &api.ResponseError{HTTPMethod: "PUT", URL: "http://127.0.0.1:1/v1/auth/approle/login", StatusCode: code, Errors: msgs}
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"400 bad role", respErr(400, "invalid role or secret ID"), true},
		{"403 denied JWT", respErr(403, "permission denied"), true},
		{"404", respErr(404), true},
		{"408 is transient", respErr(408), false},
		{"412 is transient", respErr(412), false},
		{"429 rate limited", respErr(429), false},
		{"500", respErr(500, "internal error"), false},
		{"503 sealed", respErr(503, "Vault is sealed"), false},
		{"wrapped 403", fmt.Errorf("login: %w", Wrap(OpLogin, respErr(403))), true},
		{"network", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"canceled", context.Canceled, false},
		{"marked permanent", Permanent(os.ErrNotExist), true},
		{"unknown CA", fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), true},
		{"hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "vault"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestIsTokenRejected(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"403", Wrap(OpKVMetadata, respErr(403, "permission denied")), true},
		{"raw 403", respErr(403), true},
		{"400", respErr(400), false},
		{"network", errors.New("EOF"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTokenRejected(tt.err); got != tt.want {
				t.Errorf("IsTokenRejected = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWrapIsOneSecretFreeLine(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"vault errors", respErr(403, "1 error occurred:\n\t* permission denied\n\n"), "kv_read: HTTP 403: 1 error occurred: * permission denied"},
		{"raw body not echoed", &api.ResponseError{StatusCode: 502, RawError: true, Errors: []string{"FAKE-body-with-secret"}}, "kv_read: HTTP 502: non-JSON error body from Bad Gateway"},
		{"transport", errors.New("Get \"http://x\":\n dial tcp: refused"), "kv_read: Get \"http://x\": dial tcp: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Wrap(OpKVRead, tt.err)
			if err.Error() != tt.want {
				t.Errorf("Wrap = %q, want %q", err.Error(), tt.want)
			}
			if !errors.Is(err, tt.err) {
				t.Error("Wrap does not unwrap to the original error")
			}
			if strings.Contains(err.Error(), "FAKE-body") {
				t.Error("raw body leaked into the message")
			}
		})
	}
	if Wrap(OpKVRead, nil) != nil {
		t.Error("Wrap(nil) != nil")
	}
}

func TestOpFromPath(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/v1/auth/kubernetes/login", OpLogin},
		{"/v1/auth/approle-prod/login", OpLogin},
		{"/v1/auth/token/renew-self", OpRenew},
		{"/v1/auth/token/lookup-self", OpLookup},
		{"/v1/sys/wrapping/unwrap", OpUnwrap},
		{"/v1/sys/wrapping/lookup", OpWrappingLookup},
		{"/v1/secret/metadata/partners/acme/zerodha", OpKVMetadata},
		{"/v1/secret/data/partners/acme/zerodha", OpKVRead},
		{"/v1/transit/decrypt/partners", OpTransitDecrypt},
		{"/v1/sys/health", OpOther},
	}
	for _, tt := range tests {
		if got := opFromPath(tt.path); got != tt.want {
			t.Errorf("opFromPath(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestWrapResponseRetryAfter(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		header string
		want   time.Duration
	}{
		{"none", "", 0},
		{"seconds", "2", 2 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"capped", "86400", MaxRetryAfter},
		{"http date", now.Add(90 * time.Second).UTC().Format(http.TimeFormat), 90 * time.Second},
		{"date in the past", now.Add(-time.Minute).UTC().Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &api.Response{Response: &http.Response{StatusCode: 429, Header: http.Header{}}}
			if tt.header != "" {
				resp.Header.Set("Retry-After", tt.header)
			}
			err := WrapResponse(OpKVMetadata, resp, respErr(429, "request path \"secret/metadata/x\": rate limit quota exceeded"))
			got, ok := RetryAfter(fmt.Errorf("read metadata: %w", err))
			// An HTTP date has one-second resolution.
			if ok != (tt.want > 0) || got < tt.want-time.Second || got > tt.want {
				t.Errorf("RetryAfter = %v, %v; want %v", got, ok, tt.want)
			}
			if StatusCode(err) != 429 || IsPermanent(err) || !errors.Is(err, ErrThrottled) {
				t.Errorf("status %d permanent %v; want a transient 429", StatusCode(err), IsPermanent(err))
			}
		})
	}
	if _, ok := RetryAfter(WrapResponse(OpKVMetadata, nil, respErr(503))); ok {
		t.Error("RetryAfter without a response")
	}
	if WrapResponse(OpKVMetadata, nil, nil) != nil {
		t.Error("WrapResponse(nil error) is not nil")
	}
}

func TestRequestErrorKinds(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: errors.New("connection refused")}
	tests := []struct {
		name string
		err  error
		is   []error
		not  []error
	}{
		{"404", &api.ResponseError{StatusCode: 404}, []error{ErrNotFound}, []error{ErrPermission, ErrUnreachable}},
		{"403", &api.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}}, []error{ErrPermission}, []error{ErrNotFound, ErrUnreachable}},
		{"401", &api.ResponseError{StatusCode: 401}, []error{ErrPermission}, nil},
		{"500", &api.ResponseError{StatusCode: 500}, nil, []error{ErrNotFound, ErrPermission, ErrUnreachable, ErrThrottled}},
		{"429 rate-limit quota", &api.ResponseError{StatusCode: 429}, []error{ErrThrottled}, []error{ErrPermission, ErrUnreachable}},
		{"503 sealed", &api.ResponseError{StatusCode: 503}, []error{ErrThrottled}, []error{ErrUnreachable}},
		{"refused", refused, []error{ErrUnreachable}, []error{ErrNotFound, ErrPermission}},
		{"cancelled", &url.Error{Op: "Get", URL: "http://x", Err: context.Canceled}, nil, []error{ErrUnreachable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Wrap(OpKVRead, tt.err)
			for _, k := range tt.is {
				if !errors.Is(err, k) {
					t.Errorf("%v is not %v", err, k)
				}
			}
			for _, k := range tt.not {
				if errors.Is(err, k) {
					t.Errorf("%v is %v", err, k)
				}
			}
		})
	}
}
