package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// planDir writes value files and a plan into a temporary directory.
type planDir struct {
	t   *testing.T
	dir string
}

func newPlanDir(t *testing.T) *planDir { return &planDir{t: t, dir: t.TempDir()} }

// value writes a value file and returns its name, relative to the plan.
func (d *planDir) value(name, content string) string {
	d.t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, name), []byte(content), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return name
}

func (d *planDir) plan(body string) string {
	d.t.Helper()
	p := filepath.Join(d.dir, "plan.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return p
}

// seedSets creates n sets pre/acme/eN with a Transit field and a plain one.
func seedSets(t *testing.T, b Backend, pre, key string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		p := fmt.Sprintf("%s/acme/e%d", pre, i)
		if _, err := Put(context.Background(), b, p, vals("api_key", fmt.Sprintf("FAKE-old-key-%d", i), "api_secret", fmt.Sprintf("FAKE-old-secret-%d", i), "account", "FAKE-acct"),
			WriteOptions{TransitKey: key, Context: "acme", TransitFields: []string{"api_secret"}}); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// rotationPlan rotates api_key and api_secret of every path with values
// from files; api_secret is Transit-encrypted.
func rotationPlan(d *planDir, key string, paths []string) string {
	var sb strings.Builder
	sb.WriteString("rotations:\n")
	for i, p := range paths {
		fmt.Fprintf(&sb, "  - path: %s\n    transit: %s\n    context: acme\n    transit-fields: [api_secret]\n    fields:\n      api_key: \"@%s\"\n      api_secret: \"@%s\"\n",
			p, key, d.value(fmt.Sprintf("key-%d", i), fmt.Sprintf("FAKE-new-key-%d\n", i)), d.value(fmt.Sprintf("secret-%d", i), fmt.Sprintf("FAKE-new-secret-%d", i)))
	}
	return d.plan(sb.String())
}

// TestApply: a valid plan's dry run writes nothing and prints one line per
// entry; the apply writes every entry with the Transit fields encrypted and
// the other fields kept, and journals each write without a value.
func TestApply(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	b := vaultWithToken(t, vlt.RootToken)
	pre := testPrefix(t)
	key := newKey(t, "", true, nil)
	paths := seedSets(t, b, pre, key, 4)
	d := newPlanDir(t)
	plan := rotationPlan(d, key, paths)

	before := versions(t, b, paths...)
	var out bytes.Buffer
	if err := Apply(ctx, b, plan, ApplyOptions{DryRun: true, Journal: filepath.Join(d.dir, "dry.journal")}, &out); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	if got := versions(t, b, paths...); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("the dry run wrote: %v, before %v", got, before)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "dry.journal")); err == nil {
		t.Errorf("the dry run created a journal")
	}
	for i, p := range paths {
		want := fmt.Sprintf("ok rotations[%d] %s: version 1 -> 2; set api_key, api_secret (Transit %s, context acme: api_secret); keep account", i, p, key)
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	noValues(t, "dry-run output", out.String())

	journal := filepath.Join(d.dir, "apply.journal")
	out.Reset()
	if err := Apply(ctx, b, plan, ApplyOptions{Journal: journal}, &out); err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	noValues(t, "apply output", out.String())
	for i, p := range paths {
		got := mustRead(t, b, p, 0)
		if got["api_key"] != fmt.Sprintf("FAKE-new-key-%d", i) || got["account"] != "FAKE-acct" {
			t.Errorf("%s: api_key is the new value: %t, account kept: %t", p, got["api_key"] == fmt.Sprintf("FAKE-new-key-%d", i), got["account"] == "FAKE-acct")
		}
		if pt, err := decryptWith(t, key, "acme", got["api_secret"]); err != nil || pt != fmt.Sprintf("FAKE-new-secret-%d", i) {
			t.Errorf("%s: api_secret does not decrypt to the new value: %v", p, err)
		}
	}
	recs, err := ReadJournal(journal)
	if err != nil || len(recs) != 2*len(paths) {
		t.Fatalf("journal: %d records, %v", len(recs), err)
	}
	for i, r := range recs {
		want := JournalRecord{Op: JournalIntent, Path: paths[i/2], VersionBefore: 1}
		if i%2 == 1 {
			want.Op, want.VersionAfter = JournalApply, 2
		}
		if r.Op != want.Op || r.Path != want.Path || r.VersionBefore != want.VersionBefore || r.VersionAfter != want.VersionAfter || r.Time.IsZero() {
			t.Errorf("journal record %d: %+v; want %+v", i, r, want)
		}
	}
	raw, _ := os.ReadFile(journal)
	noValues(t, "journal", string(raw))
	if fi, _ := os.Stat(journal); fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v; want 0600", fi.Mode().Perm())
	}

	// A journal is one apply: reusing it is refused before anything is written.
	err = Apply(ctx, b, plan, ApplyOptions{Journal: journal}, &bytes.Buffer{})
	wantKind(t, err, ErrUsage, "already holds a journal")

	// A dry run of the rollback says what it would do and writes nothing
	// (not even to the journal).
	out.Reset()
	jBefore, _ := os.ReadFile(journal)
	if err := RollbackJournal(ctx, b, journal, true, time.Now, &out); err != nil || strings.Count(out.String(), "would roll back") != len(paths) {
		t.Fatalf("rollback --dry-run: %v\n%s", err, out.String())
	}
	if got := versions(t, b, paths...); got[paths[0]] != 2 || got[paths[3]] != 2 {
		t.Fatalf("rollback --dry-run wrote: %v", got)
	}
	if jAfter, _ := os.ReadFile(journal); !bytes.Equal(jBefore, jAfter) {
		t.Fatal("rollback --dry-run wrote to the journal")
	}

	// Undo the whole apply from its journal; a second rollback does nothing.
	out.Reset()
	if err := RollbackJournal(ctx, b, journal, false, time.Now, &out); err != nil {
		t.Fatalf("rollback --journal: %v\n%s", err, out.String())
	}
	for i, p := range paths {
		if got := mustRead(t, b, p, 0); got["api_key"] != fmt.Sprintf("FAKE-old-key-%d", i) {
			t.Errorf("%s not restored", p)
		}
		if !strings.Contains(out.String(), "rolled back "+p+": version 2 -> 3 (the data of version 1)") {
			t.Errorf("no line for %s:\n%s", p, out.String())
		}
	}
	out.Reset()
	if err := RollbackJournal(ctx, b, journal, false, time.Now, &out); err != nil || strings.Count(out.String(), "already rolled back") != len(paths) {
		t.Fatalf("second rollback: %v\n%s", err, out.String())
	}
	if got := versions(t, b, paths...); got[paths[0]] != 3 {
		t.Fatalf("the second rollback wrote: %v", got)
	}
}

// TestApplyValidation: every problem of a plan is listed at once, one line
// per entry, and nothing is written; a plan's own syntax errors name the
// bad key.
func TestApplyValidation(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	pre := testPrefix(t)
	root := vaultWithToken(t, vlt.RootToken)
	key := newKey(t, "", true, nil)
	paths := seedSets(t, root, pre, key, 3)
	// A token that may write e0 and e2 but only read e1.
	tok := tokenWith(t, fmt.Sprintf(`
path "secret/data/%[1]s/acme/*" { capabilities = ["read", "update"] }
path "secret/data/%[1]s/acme/e1" { capabilities = ["read"] }
path "secret/metadata/%[1]s/acme/*" { capabilities = ["read", "list"] }
path "transit/encrypt/%[2]s" { capabilities = ["update"] }
path "transit/keys/%[2]s" { capabilities = ["read"] }
`, strings.TrimPrefix(pre, "secret/"), key))
	b := vaultWithToken(t, tok)
	d := newPlanDir(t)
	ok := d.value("ok", "FAKE-v")
	d.value("empty", "")
	plan := d.plan(fmt.Sprintf(`rotations:
  - path: %[1]s
    transit: %[2]s
    context: acme
    fields: {api_key: "@%[3]s", api_secret: "@%[3]s"}
  - path: %[4]s
    fields: {api_key: "@%[3]s"}
  - path: %[1]s
    fields: {api_key: "FAKE-inline-value", other: "@missing-file", third: "@empty"}
  - path: %[5]s/acme/nosuch
    fields: {api_key: "@%[3]s"}
  - path: %[6]s
    transit: %[2]s
    context: beta-typo-is-fine
    transit-fields: [nope]
    fields: {api_key: "@%[3]s"}
  - path: %[6]s
    context: acme
    fields: {api_secret: "@%[3]s"}
  - path: nomount/acme/x
    expires-at: yesterday
    fields: {}
`, paths[0], key, ok, paths[1], pre, paths[2]))
	before := versions(t, root, paths...)
	var out bytes.Buffer
	err := Apply(ctx, b, plan, ApplyOptions{DryRun: true}, &out)
	wantKind(t, err, ErrPlanInvalid, "6 of 7 entries have problems")
	for _, want := range []string{
		// Entry 0 is valid on its own, but its path comes back in entry 2.
		"PROBLEM rotations[1] " + paths[1] + ": the token may not write it (capabilities on the data path: read;",
		"PROBLEM rotations[2] " + paths[0] + ": path given twice (also rotations[0])",
		`fields.api_key: a plan holds no secret: give the value's file as "@/path/to/file"`,
		"fields.other: open " + filepath.Join(d.dir, "missing-file") + ": no such file or directory",
		"fields.third: " + filepath.Join(d.dir, "empty") + " is empty",
		`field "api_key" holds`, // not Transit: e0's api_key is plain, so only api_secret would complain
		"PROBLEM rotations[3] " + pre + "/acme/nosuch: does not exist on Vault at",
		`PROBLEM rotations[4] ` + paths[2] + `: transit-fields names "nope", which is not among the fields given`,
		"PROBLEM rotations[5] " + paths[2] + ": path given twice (also rotations[4]): one entry per set; context needs transit;",
		`field "api_secret" holds Transit ciphertext in version 1: give transit`,
		"PROBLEM rotations[6] nomount/acme/x: fields: at least one field is required",
		`expires-at "yesterday": want an RFC 3339 time`,
		// This token may do nothing there, so Vault does not say whether
		// the mount exists.
		"permission denied: read nomount/metadata/acme/x",
	} {
		if want == `field "api_key" holds` {
			if strings.Contains(out.String(), want) {
				t.Errorf("a plain field was reported as ciphertext:\n%s", out.String())
			}
			continue
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "PROBLEM rotations[0]") {
		t.Errorf("entry 0 has no problem of its own:\n%s", out.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 7 || !strings.Contains(out.String(), "ok rotations[0] "+paths[0]+": version 1 -> 2") {
		t.Errorf("%d lines; want one per entry (7), entry 0 ok:\n%s", n, out.String())
	}
	noValues(t, "validation output", out.String()+err.Error())

	// Without --dry-run the same validation stops everything.
	err = Apply(ctx, b, plan, ApplyOptions{}, &bytes.Buffer{})
	wantKind(t, err, ErrPlanInvalid, "nothing written")
	if got := versions(t, root, paths...); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("an invalid plan wrote: %v, before %v", got, before)
	}

	// The plan file itself.
	for _, tc := range []struct{ name, body, msg string }{
		{"unknown key", "rotations:\n  - path: secret/x\n    feilds: {a: \"@f\"}\n", `unknown field "feilds"`},
		{"duplicate key", "rotations:\n  - path: secret/x\n    path: secret/y\n    fields: {a: \"@f\"}\n", `key "path" already set`},
		{"no rotations", "rotations: []\n", "no rotations"},
		{"not YAML", "rotations: [\n", "did not find expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Apply(ctx, b, d.plan(tc.body), ApplyOptions{DryRun: true}, &bytes.Buffer{})
			wantKind(t, err, ErrUsage, tc.msg)
		})
	}
}

// TestApplyFailsPartWay: Vault refuses the fourth entry's write although
// the token's capabilities allow it (a policy denying the check-and-set
// "options" parameter, which sys/capabilities-self does not see), so the
// failure shows only at write time. The three entries written are rolled back, the later ones are
// never written, the journal records both, and the error says so.
func TestApplyFailsPartWay(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	pre := testPrefix(t)
	root := vaultWithToken(t, vlt.RootToken)
	key := newKey(t, "", true, nil)
	paths := seedSets(t, root, pre, key, 6)
	rel := strings.TrimPrefix(pre, "secret/")
	tok := tokenWith(t, fmt.Sprintf(`
path "secret/data/%[1]s/acme/*" { capabilities = ["read", "update"] }
path "secret/data/%[1]s/acme/e3" {
  capabilities = ["read", "update"]
  denied_parameters = { "options" = [] }
}
path "secret/metadata/%[1]s/acme/*" { capabilities = ["read", "list"] }
path "transit/encrypt/%[2]s" { capabilities = ["update"] }
path "transit/keys/%[2]s" { capabilities = ["read"] }
`, rel, key))
	b := vaultWithToken(t, tok)
	caps, err := b.Capabilities(ctx, paths[3])
	if err != nil || !can(caps.Data, "update") {
		t.Fatalf("capabilities of e3: %+v %v; the fault must be invisible to validation", caps, err)
	}
	d := newPlanDir(t)
	plan := rotationPlan(d, key, paths)
	journal := filepath.Join(d.dir, "apply.journal")
	var out bytes.Buffer
	err = Apply(ctx, b, plan, ApplyOptions{Journal: journal}, &out)
	wantKind(t, err, ErrApplyFailed, "apply failed at rotations[3] "+paths[3]+": permission denied")
	wantKind(t, err, ErrApplyFailed, "3 written entries rolled back, 2 later entries not written")
	noValues(t, "output", out.String())
	for i, p := range paths {
		got := mustRead(t, root, p, 0)
		if got["api_key"] != fmt.Sprintf("FAKE-old-key-%d", i) {
			t.Errorf("%s holds a new value after the rollback", p)
		}
		want := 1
		if i < 3 {
			want = 3 // the apply's version 2, then the rollback's version 3
			if !strings.Contains(out.String(), fmt.Sprintf("rolled back rotations[%d] %s: version 2 -> 3 (the data of version 1)", i, p)) {
				t.Errorf("no rollback line for %s:\n%s", p, out.String())
			}
			if pt, err := decryptWith(t, key, "acme", got["api_secret"]); err != nil || pt != fmt.Sprintf("FAKE-old-secret-%d", i) {
				t.Errorf("%s api_secret after rollback: %v", p, err)
			}
		}
		if v := versions(t, root, p)[p]; v != want {
			t.Errorf("%s at version %d; want %d", p, v, want)
		}
	}
	recs, err := ReadJournal(journal)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range recs {
		ops = append(ops, fmt.Sprintf("%s %s %d->%d", r.Op, strings.TrimPrefix(r.Path, pre+"/acme/"), r.VersionBefore, r.VersionAfter))
	}
	want := "intent e0 1->0,apply e0 1->2,intent e1 1->0,apply e1 1->2,intent e2 1->0,apply e2 1->2,intent e3 1->0," +
		"rollback e2 2->3,rollback e1 2->3,rollback e0 2->3"
	if strings.Join(ops, ",") != want {
		t.Fatalf("journal %v; want %s", ops, want)
	}
}

// TestApplyCutThenJournalRollback: the connection to Vault is cut after the
// first write lands, so neither the apply nor its own rollback can finish;
// once Vault answers again `rollback --journal` restores every path the
// journal names, refusing (and naming) one written since by someone else.
func TestApplyCutThenJournalRollback(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	pre := testPrefix(t)
	root := vaultWithToken(t, vlt.RootToken)
	key := newKey(t, "", true, nil)
	paths := seedSets(t, root, pre, key, 40)
	proxy, err := testenv.StartProxy(vlt.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	b, err := NewVault(VaultConfig{Addr: proxy.URL(), Timeout: 2 * time.Second, Getenv: func(k string) string {
		if k == "VAULT_TOKEN" {
			return vlt.RootToken
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	d := newPlanDir(t)
	plan := rotationPlan(d, key, paths)
	journal := filepath.Join(d.dir, "apply.journal")

	// Cut as soon as the first entry's new version lands.
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if m, err := root.Metadata(ctx, paths[0]); err == nil && m.Current == 2 {
				proxy.Cut()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var out bytes.Buffer
	err = Apply(ctx, b, plan, ApplyOptions{Journal: journal}, &out)
	<-cut
	if !errors.Is(err, ErrApplyFailed) || !strings.Contains(err.Error(), "(once Vault answers: credlet-agent creds rollback --journal "+journal+")") {
		t.Fatalf("apply through a cut: %v\n%s", err, out.String())
	}
	recs, err := ReadJournal(journal)
	if err != nil {
		t.Fatal(err)
	}
	var applied []string // paths the journal says were written
	for _, r := range recs {
		switch r.Op {
		case JournalApply:
			applied = append(applied, r.Path)
		case JournalRollback:
			t.Fatalf("a rollback got through the cut: %+v", r)
		}
	}
	if last := recs[len(recs)-1]; len(recs) >= 2*len(paths) || last.Op != JournalIntent {
		t.Fatalf("journal after the cut: %d records, the last %+v; want the intent of the write that failed last", len(recs), last)
	}
	proxy.Restore()

	// Someone rotates one of the journal's paths in the meantime (the first:
	// its write landed, the cut waited for it).
	changed := paths[0]
	if _, err := Rotate(ctx, root, changed, vals("api_key", "FAKE-someone-else"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = RollbackJournal(ctx, b, journal, false, time.Now, &out)
	wantKind(t, err, ErrRollbackRefused, "1 paths refused")
	if !strings.Contains(out.String(), "REFUSED "+changed+": changed since the journal: now at version 3") {
		t.Fatalf("the changed path is not named:\n%s", out.String())
	}
	noValues(t, "rollback output", out.String())
	if got := mustRead(t, root, changed, 0); got["api_key"] != "FAKE-someone-else" {
		t.Errorf("the refused path was overwritten")
	}
	// Every other path the apply touched holds its old data again, the one
	// whose answer was lost included; the paths after it are untouched.
	inFlight := recs[len(recs)-1].Path
	for i, p := range paths {
		got := mustRead(t, root, p, 0)
		if p == changed {
			continue
		}
		if got["api_key"] != fmt.Sprintf("FAKE-old-key-%d", i) {
			t.Errorf("%s not restored (journal applied %d paths, in flight: %s)", p, len(applied), inFlight)
		}
		if reached := slices.Contains(applied, p) || p == inFlight; !reached && versions(t, root, p)[p] != 1 {
			t.Errorf("%s, never reached by the apply, was written", p)
		}
	}
	// A second rollback finds nothing more to do but the refused path.
	out.Reset()
	err = RollbackJournal(ctx, b, journal, false, time.Now, &out)
	wantKind(t, err, ErrRollbackRefused, "1 paths refused")
	for l := range strings.Lines(out.String()) {
		if strings.HasPrefix(l, "rolled back ") {
			t.Errorf("the second rollback wrote: %s", l)
		}
	}
}

// TestExpiresAtOption: put and rotate --expires-at write the set's custom
// metadata; a set that carries one refuses a rotate without it; none
// removes it; a past or malformed time is refused.
func TestExpiresAtOption(t *testing.T) {
	testenv.NeedServers(t)
	ctx := context.Background()
	b := vaultWithToken(t, vlt.RootToken)
	p := testPrefix(t) + "/acme/kite-oauth"
	exp := time.Now().Add(20 * time.Hour).UTC().Truncate(time.Second)
	run := func(cmd string, args []string, expiresAt string) (string, error) {
		var out bytes.Buffer
		inv := Invocation{Command: cmd, Args: args, ExpiresAt: expiresAt}
		err := Run(ctx, b, inv, strings.NewReader("FAKE-token\n"), &out, &out)
		return out.String(), err
	}
	out, err := run("put", []string{p, "access_token=-"}, exp.Format(time.RFC3339))
	if err != nil || !strings.Contains(out, "expires_at "+exp.Format(time.RFC3339)) {
		t.Fatalf("put --expires-at: %v\n%s", err, out)
	}
	if got, err := b.ExpiresAt(ctx, p); err != nil || !got.Equal(exp) {
		t.Fatalf("stored expires_at %v, %v; want %v", got, err, exp)
	}
	_, err = run("rotate", []string{p, "access_token=-"}, "")
	wantKind(t, err, ErrUsage, "carries expires_at "+exp.Format(time.RFC3339)+" (custom metadata): give --expires-at TIME")
	if v := versions(t, b, p)[p]; v != 1 {
		t.Fatalf("the refused rotate wrote version %d", v)
	}
	exp2 := exp.Add(24 * time.Hour)
	if _, err := run("rotate", []string{p, "access_token=-"}, exp2.Format(time.RFC3339)); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.ExpiresAt(ctx, p); !got.Equal(exp2) {
		t.Fatalf("expires_at after rotate %v; want %v", got, exp2)
	}
	if _, err := run("rotate", []string{p, "access_token=-"}, "none"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.ExpiresAt(ctx, p); !got.IsZero() {
		t.Fatalf("expires_at after --expires-at none: %v", got)
	}
	for _, bad := range []struct{ v, msg string }{
		{"2020-01-01T00:00:00Z", "is not in the future"},
		{"tomorrow", "want an RFC 3339 time"},
	} {
		_, err := run("rotate", []string{p, "access_token=-"}, bad.v)
		wantKind(t, err, ErrUsage, bad.msg)
	}
	_, err = run("history", []string{p}, exp.Format(time.RFC3339))
	wantKind(t, err, ErrUsage, "--expires-at applies to put and rotate")
}
