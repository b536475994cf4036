package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credlet/credlet/internal/securemem"
)

// RewrapOptions shape creds rewrap.
type RewrapOptions struct {
	Key     string // Transit key (required)
	Context string // derived-key context (required for a derived key)
	DryRun  bool   // rewrap in Transit to check it works, but write nothing
	// Batch is how many ciphertexts go into one Transit rewrap call
	// (DefaultRewrapBatch if 0).
	Batch int
	// Workers is how many sets are read or written at once
	// (DefaultRewrapWorkers if 0).
	Workers int
}

// Defaults of RewrapOptions.
const (
	DefaultRewrapBatch   = 250
	DefaultRewrapWorkers = 4
)

// RewrapStats counts what a rewrap did, by outcome.
type RewrapStats struct {
	Latest    int // the key's latest version
	Rewrapped int // written as a new version (or, in a dry run, would be)
	Current   int // every ciphertext already at the latest version
	Plain     int // no Transit ciphertext at all
	Skipped   int // current version revoked or destroyed
	Failed    int
}

// ErrRewrapIncomplete is a rewrap that left some sets unrewrapped; each is
// named in the output.
var ErrRewrapIncomplete = errors.New("rewrap incomplete")

// rewrapItem is one set on its way through a rewrap.
type rewrapItem struct {
	path    string
	version int
	created time.Time         // when that version was written
	fields  map[string][]byte // the current version's values; wiped at the end
	stale   []string          // ciphertext fields below the latest key version, sorted
	from    map[string]int    // their key versions
	status  string            // rewrapped, current, plain, skipped, failed
	detail  string
	written int // the new version
}

// Rewrap rewraps every KV v2 set under prefix (recursively; prefix may be
// one set) whose fields hold Transit ciphertext of an older version of
// o.Key, and writes each as a new version with check-and-set. Plain fields
// are carried over unchanged; sets already current are left alone. It
// prints one line per set and a summary to out, never a value, and
// returns an ErrRewrapIncomplete error when a set failed.
func Rewrap(ctx context.Context, b Backend, prefix string, o RewrapOptions, out io.Writer) (RewrapStats, error) {
	var st RewrapStats
	lb, err := lifecycle(b, "creds rewrap")
	if err != nil {
		return st, err
	}
	if o.Key == "" {
		return st, usage("rewrap needs --transit KEY: the Transit key whose ciphertext is rewrapped")
	}
	if err := validKeyName(o.Key); err != nil {
		return st, err
	}
	batch, workers := o.Batch, o.Workers
	if batch <= 0 {
		batch = DefaultRewrapBatch
	}
	if workers <= 0 {
		workers = DefaultRewrapWorkers
	}
	k, err := lb.TransitKey(ctx, o.Key)
	if err != nil {
		return st, err
	}
	switch {
	case k.Derived && o.Context == "":
		return st, usage(fmt.Sprintf("transit key %s is derived: --context is required (the partner's context)", o.Key))
	case !k.Derived && o.Context != "":
		return st, usage(fmt.Sprintf("transit key %s is not derived: --context does not apply", o.Key))
	}
	st.Latest = k.LatestVersion
	paths, err := listSets(ctx, lb, prefix)
	if err != nil {
		return st, err
	}
	if len(paths) == 0 {
		return st, newKind(ErrNotFound, fmt.Sprintf("no credential set at or under %s on %s", prefix, lb.Describe()))
	}

	// Chunks of sets: read them, rewrap their stale ciphertexts in as few
	// Transit calls as the batch size allows, write them, print them.
	const chunk = 100
	for start := 0; start < len(paths); start += chunk {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		items := make([]*rewrapItem, 0, chunk)
		for _, p := range paths[start:min(start+chunk, len(paths))] {
			items = append(items, &rewrapItem{path: p})
		}
		parallel(workers, items, func(it *rewrapItem) { readForRewrap(ctx, lb, it, k) })
		rewrapChunk(ctx, lb, o, items, batch)
		if !o.DryRun {
			parallel(workers, items, func(it *rewrapItem) { writeRewrapped(ctx, lb, it) })
		}
		for _, it := range items {
			securemem.WipeFields(it.fields)
			printRewrap(out, it, k.LatestVersion, o.DryRun)
			switch it.status {
			case "rewrapped":
				st.Rewrapped++
			case "current":
				st.Current++
			case "plain":
				st.Plain++
			case "skipped":
				st.Skipped++
			default:
				st.Failed++
			}
		}
	}
	verb := "rewrapped"
	if o.DryRun {
		verb = "to rewrap"
	}
	fmt.Fprintf(out, "rewrap of %s with transit key %s (latest version %d): %d %s, %d current, %d without ciphertext, %d revoked (skipped), %d failed%s\n",
		prefix, o.Key, k.LatestVersion, st.Rewrapped, verb, st.Current, st.Plain, st.Skipped, st.Failed, map[bool]string{true: " (dry run: nothing written)"}[o.DryRun])
	if st.Failed > 0 {
		return st, &kindError{kind: ErrRewrapIncomplete, msg: fmt.Sprintf("rewrap: %d of %d sets failed (listed above); the others are done, and a second run only retries what is left", st.Failed, len(paths))}
	}
	if !o.DryRun && k.MinDecryptionVersion < k.LatestVersion {
		fmt.Fprintf(out, "the current version of every set under %s is at key version %d: once every prefix using %s is rewrapped, min_decryption_version can be raised to %d (vault write transit/keys/%s/config min_decryption_version=%d); older KV versions keep their old ciphertext and would no longer decrypt\n",
			prefix, k.LatestVersion, o.Key, k.LatestVersion, o.Key, k.LatestVersion)
	}
	return st, nil
}

// listSets returns the sets at and under prefix, sorted.
func listSets(ctx context.Context, b Backend, prefix string) ([]string, error) {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return nil, usage("rewrap needs a PREFIX: MOUNT/PATH of a set or a folder, e.g. secret/partners/acme")
	}
	var out []string
	if strings.Contains(prefix, "/") {
		// prefix itself may be a set (and a folder too).
		switch _, err := b.Metadata(ctx, prefix); {
		case err == nil:
			p, _ := cleanSetPath(prefix)
			out = append(out, p)
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := b.List(ctx, dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				if err := walk(dir + "/" + strings.TrimSuffix(n, "/")); err != nil {
					return err
				}
				continue
			}
			p, err := cleanSetPath(dir + "/" + n)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	}
	if err := walk(prefix); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parallel runs f on every item with at most n at a time.
func parallel(n int, items []*rewrapItem, f func(*rewrapItem)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(it)
		}()
	}
	wg.Wait()
}

// readForRewrap reads the set's current version and finds its stale
// ciphertexts.
func readForRewrap(ctx context.Context, b Backend, it *rewrapItem, k KeyInfo) {
	s, err := b.Read(ctx, it.path, 0)
	switch {
	case errors.Is(err, ErrDeleted):
		it.status, it.detail = "skipped", oneLineErr(err)
		return
	case err != nil:
		it.status, it.detail = "failed", oneLineErr(err)
		return
	}
	it.version, it.created, it.fields = s.Version, s.CreatedAt, s.Fields
	it.from = map[string]int{}
	anyCT := false
	for name, v := range it.fields {
		n := ciphertextVersion(v)
		if n == 0 {
			continue
		}
		anyCT = true
		switch {
		case n > k.LatestVersion:
			it.status, it.detail = "failed", fmt.Sprintf("field %s holds ciphertext of key version %d, newer than %s's latest (%d): it was made with another key", name, n, k.Name, k.LatestVersion)
			return
		case n < k.MinDecryptionVersion:
			it.status, it.detail = "failed", fmt.Sprintf("field %s holds ciphertext of key version %d, below min_decryption_version %d: Transit can no longer rewrap it (lower min_decryption_version, or rotate the value with creds rotate)", name, n, k.MinDecryptionVersion)
			return
		case n < k.LatestVersion:
			it.stale = append(it.stale, name)
			it.from[name] = n
		}
	}
	slices.Sort(it.stale)
	switch {
	case !anyCT:
		it.status = "plain"
	case len(it.stale) == 0:
		it.status = "current"
	}
}

// rewrapChunk rewraps the stale ciphertexts of the chunk's sets, batch at
// a time; when a batch fails it retries set by set, so one bad set does not
// fail its neighbours.
func rewrapChunk(ctx context.Context, b Lifecycle, o RewrapOptions, items []*rewrapItem, batch int) {
	var todo []*rewrapItem
	for _, it := range items {
		if it.status == "" && len(it.stale) > 0 {
			todo = append(todo, it)
		}
	}
	for len(todo) > 0 {
		// As many whole sets as fit in one batch (at least one).
		n, count := 0, 0
		for n < len(todo) && (n == 0 || count+len(todo[n].stale) <= batch) {
			count += len(todo[n].stale)
			n++
		}
		group := todo[:n]
		todo = todo[n:]
		if err := rewrapSets(ctx, b, o, group); err != nil && len(group) > 1 {
			for _, it := range group {
				if err := rewrapSets(ctx, b, o, []*rewrapItem{it}); err != nil {
					it.status, it.detail = "failed", oneLineErr(err)
				}
			}
		} else if err != nil {
			group[0].status, group[0].detail = "failed", oneLineErr(err)
		}
	}
}

// rewrapSets rewraps every stale field of the sets in one Transit call and
// puts the new ciphertexts in place.
func rewrapSets(ctx context.Context, b Lifecycle, o RewrapOptions, sets []*rewrapItem) error {
	var cts []string
	for _, it := range sets {
		for _, f := range it.stale {
			cts = append(cts, string(it.fields[f])) // ciphertext: not a secret
		}
	}
	res, err := b.Rewrap(ctx, o.Key, o.Context, cts)
	if err != nil {
		return err
	}
	if len(res) != len(cts) {
		return fmt.Errorf("transit rewrap with key %s: %d results for %d ciphertexts", o.Key, len(res), len(cts))
	}
	i := 0
	for _, it := range sets {
		for _, f := range it.stale {
			it.fields[f] = []byte(res[i])
			i++
		}
		it.status = "rewrapped"
	}
	return nil
}

// writeRewrapped writes a rewrapped set on top of the version read, and
// marks the new version in the set's custom metadata as holding the
// values rotated when the version read was (or, if that one was itself a
// rewrap, when its values were): the agents' last-rotation gauge keeps
// telling the credential's age, not the rewrap's.
func writeRewrapped(ctx context.Context, b Lifecycle, it *rewrapItem) {
	if it.status != "rewrapped" {
		return
	}
	fields := make(map[string][]byte, len(it.fields))
	for k, v := range it.fields {
		fields[k] = slices.Clone(v) // Write wipes what it is given
	}
	v, err := b.Write(ctx, it.path, fields, it.version)
	if err != nil {
		it.status, it.detail = "failed", oneLineErr(err)
		if errors.Is(err, ErrCASConflict) {
			it.detail += " (it was written while being rewrapped: run rewrap again)"
		}
		return
	}
	it.written = v
	if err := b.MarkRewrapped(ctx, it.path, it.version, v, it.created); err != nil {
		it.status = "failed"
		it.detail = fmt.Sprintf("written as version %d, but recording when its values were rotated failed (agents started from now on report the rewrap as the last rotation): %s", v, oneLineErr(err))
	}
}

func printRewrap(w io.Writer, it *rewrapItem, latest int, dryRun bool) {
	var from []string
	for _, f := range it.stale {
		from = append(from, fmt.Sprintf("%s v%d", f, it.from[f]))
	}
	switch it.status {
	case "rewrapped":
		if dryRun {
			fmt.Fprintf(w, "would rewrap %s: version %d (%s -> key v%d)\n", it.path, it.version, strings.Join(from, ", "), latest)
			return
		}
		fmt.Fprintf(w, "rewrapped %s: version %d -> %d (%s -> key v%d)\n", it.path, it.version, it.written, strings.Join(from, ", "), latest)
	case "current":
		fmt.Fprintf(w, "current %s: version %d (ciphertext at key v%d)\n", it.path, it.version, latest)
	case "plain":
		fmt.Fprintf(w, "no ciphertext %s: version %d (no Transit field)\n", it.path, it.version)
	case "skipped":
		fmt.Fprintf(w, "skipped %s: %s\n", it.path, it.detail)
	default:
		fmt.Fprintf(w, "FAILED %s: %s\n", it.path, it.detail)
	}
}

// cleanSetPath validates a MOUNT/PATH and returns its canonical form.
func cleanSetPath(p string) (string, error) {
	c, err := cleanPath(p)
	if err != nil {
		return "", usage(err.Error())
	}
	return c, nil
}

// oneLineErr is err's message on one line.
func oneLineErr(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
