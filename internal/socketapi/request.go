package socketapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/credspec"
)

type route int

const (
	routeList route = iota + 1
	routeGet
	routeHealth
)

const credentialsPrefix = "/v1/credentials/"

// request is a parsed API request.
type request struct {
	route    route
	name     string        // routeGet
	previous bool          // version=previous: the rollback pointer, not the current version
	wait     bool          // long poll
	version  int           // wait=VERSION: answer once the current version differs
	timeout  time.Duration // of the long poll, capped at maxWait
}

// apiError is an error answer: status, code and a one-line message.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

const endpoints = "/v1/credentials, /v1/credentials/{name}, /v1/health"

// parseRequest parses the path and raw query of a GET or HEAD request.
func parseRequest(path, rawQuery string, maxWait time.Duration) (request, *apiError) {
	var r request
	switch {
	case path == "/v1/credentials":
		r.route = routeList
	case path == "/v1/health":
		r.route = routeHealth
	case strings.HasPrefix(path, credentialsPrefix):
		r.route = routeGet
		r.name = path[len(credentialsPrefix):]
		if err := credspec.ValidateName(r.name); err != nil {
			return r, badRequest("credential name %q: allowed lower-case letters, digits, '-', '_', 1-63 characters", clip(r.name))
		}
	default:
		return r, &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %q; endpoints: %s", clip(path), endpoints)}
	}
	if rawQuery == "" {
		return r, nil
	}
	if r.route != routeGet {
		return r, badRequest("%s takes no query parameters", path)
	}
	var haveTimeout bool
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		v, err := url.QueryUnescape(v)
		if err != nil {
			return r, badRequest("query parameter %q: bad escaping", clip(k))
		}
		switch k {
		case "wait":
			if r.wait {
				return r, badRequest("wait given twice")
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return r, badRequest("wait=%q: want the version you have, an integer >= 0", clip(v))
			}
			r.wait, r.version = true, n
		case "version":
			if r.previous {
				return r, badRequest("version given twice")
			}
			if v != "previous" {
				return r, badRequest("version=%q: allowed previous (the version before the current one)", clip(v))
			}
			r.previous = true
		case "timeout":
			if haveTimeout {
				return r, badRequest("timeout given twice")
			}
			d, err := parseTimeout(v)
			if err != nil {
				return r, badRequest("timeout=%q: want a positive duration such as 30s or 5m, or whole seconds (max %s)", clip(v), maxWait)
			}
			haveTimeout, r.timeout = true, min(d, maxWait)
		default:
			return r, badRequest("unknown query parameter %q; allowed: wait, timeout, version", clip(k))
		}
	}
	if r.previous && r.wait {
		return r, badRequest("version=previous cannot be combined with wait: the previous version does not change until the next rotation")
	}
	if haveTimeout && !r.wait {
		return r, badRequest("timeout needs wait=VERSION")
	}
	if r.wait && !haveTimeout {
		r.timeout = min(DefaultWaitTimeout, maxWait)
	}
	return r, nil
}

// parseTimeout accepts a Go duration ("30s", "1m30s") or whole seconds ("30").
func parseTimeout(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > int64(24*time.Hour/time.Second) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("not a positive duration")
	}
	return d, nil
}

// clip keeps hostile input from making long error lines; callers quote it
// with %q.
func clip(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}
