package credspec

import (
	"errors"
	"net/url"
	"strings"
)

// ErrVaultAddr is wrapped by every CheckVaultAddr error.
var ErrVaultAddr = errors.New("invalid Vault address")

// CheckVaultAddr is the one rule for a Vault address, wherever it is
// given (agent flag, operator CLI, annotation, injector config): an
// absolute http or https URL with a host and nothing that could carry a
// secret or confuse a flag (user info, query, fragment, white space). The
// message does not repeat the address: it may hold a password or token.
func CheckVaultAddr(addr string) error {
	bad := func(why string) error {
		return &Problem{Kind: ErrVaultAddr, Text: why}
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return bad("no host")
	case u.User != nil:
		return bad("user info is not allowed")
	case u.Fragment != "" || strings.Contains(addr, "#"):
		return bad("a fragment is not allowed")
	case u.RawQuery != "" || strings.Contains(addr, "?"):
		return bad("a query is not allowed")
	case strings.ContainsAny(addr, " \t\r\n\x00"):
		return bad("whitespace is not allowed")
	}
	return nil
}
