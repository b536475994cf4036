package annotation

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/credlet/credlet/internal/credspec"
	"github.com/credlet/credlet/internal/oneline"
)

// errBad is returned by a parser whose value is simply not in the allowed
// set; the denial then quotes the field's Allowed text alone.
var errBad = errors.New("not allowed")

var (
	logLevels   = []string{"debug", "info", "warn", "error"}
	minCPU      = resource.MustParse("1m")
	maxCPU      = resource.MustParse("4")
	minMemory   = resource.MustParse("16Mi")
	maxMemory   = resource.MustParse("1Gi")
	minRefresh  = time.Second
	maxRefresh  = 24 * time.Hour
	maxIDValue  = int64(1<<31 - 1)
	maxListSize = 64
)

// roleOK: a letter, digit or '_', then letters, digits, '.', '_', '@', '-';
// 1-128 bytes (the regexp ^[A-Za-z0-9_][A-Za-z0-9._@-]{0,127}$, written
// out; credspec's TestTokenMatchesRegexp).
func roleOK(v string) bool { return credspec.Token(v, 128, "._@-") }

// credspecProblem strips credspec's sentinel prefix: the denial already
// names the key.
func credspecProblem(err error) error {
	return errors.New(credspec.ProblemOf(err))
}

func parseCredPath(p *state, name, v string) error {
	if _, _, err := credspec.SplitKVPath(v); err != nil {
		return credspecProblem(err)
	}
	c := p.cred(name)
	c.path, c.hasPath = v, true
	return nil
}

// credOption checks one credspec option alone (so the denial names this
// key), then keeps it for the final credspec.Build of the whole set.
func credOption(opt string) func(*state, string, string) error {
	return func(p *state, name, v string) error {
		o := opt + "=" + v
		probe := []string{o}
		if opt == "context" { // context alone is refused: it needs a key
			probe = append(probe, "transit=k")
		}
		if _, err := credspec.Build(name, "secret/probe", probe...); err != nil {
			return credspecProblem(err)
		}
		p.cred(name).opts = append(p.cred(name).opts, o)
		return nil
	}
}

func parseCredOptional(p *state, name, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil || (v != "true" && v != "false") {
		return errBad
	}
	if b {
		p.cred(name).opts = append(p.cred(name).opts, "optional")
	}
	return nil
}

func parseAuth(p *state, _, v string) error {
	if a := Auth(v); slices.Contains(Auths, a) {
		p.spec.Auth = a
		return nil
	}
	return errBad
}

func parseRole(p *state, _, v string) error {
	if !roleOK(v) {
		return errBad
	}
	p.spec.Role = v
	return nil
}

func parseAuthMount(p *state, _, v string) error {
	if len(v) > 128 || !credspec.MountOK(v) || slices.Contains(strings.Split(v, "/"), "..") {
		return errBad
	}
	p.spec.AuthMount = v
	return nil
}

func parseAppRoleSecret(p *state, _, v string) error {
	if len(validation.IsDNS1123Subdomain(v)) > 0 {
		return errBad
	}
	p.spec.AppRoleSecret = v
	return nil
}

func parseVaultAddr(p *state, _, v string) error {
	if err := credspec.CheckVaultAddr(v); err != nil {
		return errors.New(credspec.ProblemOf(err))
	}
	p.spec.VaultAddr = v
	return nil
}

// parseVerifyURL and parseNotify use the parsers the agent uses, so the
// injector accepts exactly what the agent will.
func parseVerifyURL(p *state, _, v string) error {
	if _, err := credspec.ParseVerifyURL(v); err != nil {
		return errors.New(credspec.ProblemOf(err))
	}
	p.spec.VerifyURL = v
	return nil
}

func parseNotify(p *state, _, v string) error {
	if _, err := credspec.ParseNotify(v); err != nil {
		return errors.New(credspec.ProblemOf(err))
	}
	p.spec.Notify = v
	return nil
}

func parseDelivery(p *state, _, v string) error {
	if v == "files,socket" {
		v = "socket,files"
	}
	for _, d := range Deliveries {
		if d.String() == v {
			p.spec.Delivery = d
			return nil
		}
	}
	return errBad
}

func parseContainers(p *state, _, v string) error {
	names := strings.Split(v, ",")
	if len(names) > maxListSize {
		return fmt.Errorf("more than %d names", maxListSize)
	}
	for i, n := range names {
		n = strings.TrimSpace(n)
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return fmt.Errorf("%q: %s", oneline.Clip(n, 80), strings.Join(errs, "; "))
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("%q listed twice", n)
		}
		names[i] = n
	}
	p.spec.Containers = names
	return nil
}

func parseID(v string, minimum int64) (*int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < minimum || n > maxIDValue || strconv.FormatInt(n, 10) != v {
		return nil, errBad
	}
	return &n, nil
}

func parseUID(p *state, _, v string) (err error) {
	p.spec.UID, err = parseID(v, 1)
	return err
}

func parseGID(p *state, _, v string) (err error) {
	p.spec.GID, err = parseID(v, 0)
	return err
}

func parseRefresh(p *state, _, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < minRefresh || d > maxRefresh {
		return errBad
	}
	p.spec.Refresh = d
	return nil
}

func parseSidecar(p *state, _, v string) error {
	if s := Sidecar(v); slices.Contains(Sidecars, s) {
		p.spec.Sidecar = s
		return nil
	}
	return errBad
}

func parseQuantity(v string, lo, hi resource.Quantity) (*resource.Quantity, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Cmp(lo) < 0 || q.Cmp(hi) > 0 {
		return nil, errBad
	}
	return &q, nil
}

func parseAgentCPU(p *state, _, v string) (err error) {
	p.spec.AgentCPU, err = parseQuantity(v, minCPU, maxCPU)
	return err
}

func parseAgentMemory(p *state, _, v string) (err error) {
	p.spec.AgentMemory, err = parseQuantity(v, minMemory, maxMemory)
	return err
}

func parseLogLevel(p *state, _, v string) error {
	if !slices.Contains(logLevels, v) {
		return errBad
	}
	p.spec.LogLevel = v
	return nil
}

func parseStatus(p *state, _, v string) error {
	if v != StatusInjected {
		return errBad
	}
	p.spec.Status = v
	return nil
}
