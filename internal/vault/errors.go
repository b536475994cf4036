package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credlet/credlet/internal/oneline"
)

// The kinds of failure callers tell apart with errors.Is. Errors from this
// package and its subpackages (kv, transit) match them; the agent's sources
// and the operator CLI decide on them, never on message text.
var (
	// ErrNotFound: nothing at the path (HTTP 404), or no such version.
	ErrNotFound = errors.New("not found")
	// ErrDeleted: the version is soft-deleted or destroyed.
	ErrDeleted = errors.New("version deleted or destroyed")
	// ErrPermission: Vault refused the token or its policy (HTTP 401, 403).
	ErrPermission = errors.New("permission denied")
	// ErrUnreachable: no answer from Vault (connection refused, DNS, TLS
	// handshake, timeout before the response).
	ErrUnreachable = errors.New("cannot reach Vault")
	// ErrCASConflict: a check-and-set write whose version was not current.
	ErrCASConflict = errors.New("check-and-set conflict")
	// ErrBatchItem: Transit refused one item of a batch (wrong key or
	// context, corrupt ciphertext); the same input fails again.
	ErrBatchItem = errors.New("transit batch item failed")
	// ErrBadResponse: Vault answered 2xx with a body that does not parse
	// or does not hold what the request asks for.
	ErrBadResponse = errors.New("unexpected response from Vault")
	// ErrThrottled: Vault refused the request for load: a rate-limit quota
	// (HTTP 429) or a server that cannot serve now (503: sealed, standby).
	// Transient; the response's Retry-After, if any, is RetryAfter(err).
	ErrThrottled = errors.New("vault throttled the request")
)

// CASError reports a write whose expected version was not the current one.
// It matches ErrCASConflict.
type CASError struct {
	Path string
	Want int // the version the caller wrote on top of (0: expected no set)
	Have int // the current version (0: none)
}

func (e *CASError) Error() string {
	if e.Want == 0 {
		return fmt.Sprintf("%s already exists at version %d (put creates; use rotate to write a new version)", e.Path, e.Have)
	}
	if e.Have == 0 {
		return fmt.Sprintf("%s does not exist (expected version %d; use put to create it)", e.Path, e.Want)
	}
	return fmt.Sprintf("%s changed underneath you: expected version %d, it is now %d (someone else wrote it; check history and retry)", e.Path, e.Want, e.Have)
}

// Is makes errors.Is(err, ErrCASConflict) true.
func (e *CASError) Is(target error) bool { return target == ErrCASConflict }

// BatchItemError is one refused item of a Transit batch. It matches
// ErrBatchItem.
type BatchItemError struct {
	Op    string // OpTransitDecrypt, OpTransitEncrypt, OpTransitRewrap
	Index int    // position in the batch
	Msg   string // Transit's message for the item (never a plaintext)
}

func (e *BatchItemError) Error() string {
	return fmt.Sprintf("%s: item %d: %s", e.Op, e.Index, e.Msg)
}

// Is makes errors.Is(err, ErrBatchItem) true.
func (e *BatchItemError) Is(target error) bool { return target == ErrBatchItem }

// RequestError is a failed Vault request rendered as one secret-free line:
// "kv_read: HTTP 403: permission denied". It unwraps to the client's error
// (an *api.ResponseError when Vault answered).
type RequestError struct {
	Op     string // operation, one of the Op constants
	Status int    // HTTP status; 0 when Vault did not answer
	Msg    string // Vault's error messages, or the transport error
	// RetryAfter is the wait Vault asked for in a Retry-After header (a
	// rate-limit quota's 429 carries one when the quota config enables
	// response headers); 0 when it gave none. Set by WrapResponse.
	RetryAfter time.Duration
	Err        error
}

func (e *RequestError) Error() string {
	if e.Status == 0 {
		return e.Op + ": " + e.Msg
	}
	if e.Msg == "" {
		return fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.Status, e.Msg)
}

func (e *RequestError) Unwrap() error { return e.Err }

// Is matches the kinds: 404 is ErrNotFound, 401 and 403 are ErrPermission,
// 429 and 503 are ErrThrottled, and no answer at all (other than a
// cancelled context) is ErrUnreachable.
func (e *RequestError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrPermission:
		return e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
	case ErrUnreachable:
		var ue *url.Error
		return e.Status == 0 && errors.As(e.Err, &ue) &&
			!errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded)
	}
	return false
}

// Wrap turns an error from the API client into a *RequestError for op. A nil
// err stays nil. Vault's raw (non-JSON) error bodies are not echoed.
func Wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	re := &RequestError{Op: op, Err: err}
	var rerr *api.ResponseError
	switch {
	case errors.As(err, &rerr):
		re.Status = rerr.StatusCode
		if rerr.RawError {
			re.Msg = "non-JSON error body from " + http.StatusText(rerr.StatusCode)
		} else {
			re.Msg = oneline.Of(strings.Join(rerr.Errors, "; "), 300)
		}
	default:
		re.Msg = oneline.Of(err.Error(), 300)
	}
	return re
}

// MaxRetryAfter bounds the Retry-After a client honours, so a wrong or
// hostile header cannot park an agent for hours.
const MaxRetryAfter = 5 * time.Minute

// WrapResponse is Wrap for a raw request that left its response: it also
// keeps the response's Retry-After (delay-seconds or an HTTP date, capped at
// MaxRetryAfter).
func WrapResponse(op string, resp *api.Response, err error) error {
	werr := Wrap(op, err)
	var re *RequestError
	if resp == nil || resp.Response == nil || !errors.As(werr, &re) {
		return werr
	}
	re.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return werr
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		d = time.Duration(min(n, int64(MaxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, MaxRetryAfter))
}

// RetryAfter returns the wait Vault asked for with err's response, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var re *RequestError
	if errors.As(err, &re) && re.RetryAfter > 0 {
		return re.RetryAfter, true
	}
	return 0, false
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as one that retrying soon will not fix (a missing
// file, a tampered wrapping token). A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err will not go away by retrying soon: Vault
// refused the request (4xx other than 408, 412 and 429), the server's
// certificate is not trusted, or the error was marked with Permanent.
// Everything else (network errors, timeouts, 5xx, 429, sealed, standby)
// is transient.
func IsPermanent(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	if s := StatusCode(err); s != 0 {
		switch {
		case s == http.StatusRequestTimeout, s == http.StatusPreconditionFailed, s == http.StatusTooManyRequests:
			return false
		case s >= 400 && s < 500:
			return true
		}
		return false
	}
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
	)
	return errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname)
}

// IsTokenRejected reports whether Vault refused the request's token: it
// expired, was revoked, or lacks the policy (Vault answers 403 to all
// three).
func IsTokenRejected(err error) bool {
	s := StatusCode(err)
	return s == http.StatusForbidden || s == http.StatusUnauthorized
}

// StatusCode returns the HTTP status Vault answered with, or 0.
func StatusCode(err error) int {
	var re *RequestError
	if errors.As(err, &re) && re.Status != 0 {
		return re.Status
	}
	var rerr *api.ResponseError
	if errors.As(err, &rerr) {
		return rerr.StatusCode
	}
	return 0
}
