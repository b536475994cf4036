// Package audit owns credlet-agent's tamper-evident audit trail: one JSON
// object a line for every login, renewal, fetch, decrypt, commit, read,
// denial and verification, each line carrying the hash of the one before.
// It never holds a secret value or a token: callers pass names, versions,
// peers and results only.
//
// # Writing
//
// Log, ObserveRead and ObserveDeny never block: records go to a bounded queue that Run,
// the only writer, drains. When the queue is full a record is dropped and
// counted; the writer then adds a "gap" record whose "count" is the number
// lost, so the loss is itself in the chain. Failed writes are counted the
// same way, and the chain continues from the last line that reached the
// file. Files are fsynced at most a second after a write and on shutdown.
//
// Reads are summarised: ObserveRead records the first read of each (peer
// uid and pid, credential, version) at once; further reads of that key are
// counted and written as one "read" record with "count" per key and minute
// (clock.Clock decides the minute), and once more on shutdown. A key unread
// for five minutes is forgotten; its next read is recorded at once again.
// The counts of all read records for a key add up to the reads made.
// Socket refusals are summarised the same way by ObserveDeny, keyed by the
// peer's (uid, gid): the first at once, repeats as one "deny" record with
// "count" per peer and minute, so a refused peer opening thousands of
// connections adds a few lines, not thousands.
//
// # Record
//
// Fields, always in this order; those marked ? are left out when empty or
// zero:
//
//	{"ts","seq","event","credential"?,"version"?,"peer"?:{"uid","gid","pid"},"result","count"?,"detail"?,"prev","hash"}
//
//	ts      UTC time the event was logged, 2006-01-02T15:04:05.000000000Z (nine digits)
//	seq     1 for the first record of a chain, then +1 per line
//	event   login renew fetch decrypt commit read deny verify gap
//	count   reads summarised by this record (event read), refusals (event deny), or records lost (event gap)
//	detail  at most 1 KiB; a longer detail is cut and ends in "..."
//	prev    the hash of the line before; "" on the first line
//	hash    see below
//
// Strings are escaped exactly as `jq -c` prints them: `"` and `\`
// backslash-escaped; \b \f \n \r \t by name; other bytes below 0x20 and 0x7f
// as \u00xx with lower-case hex; everything else raw UTF-8 (invalid UTF-8 is
// replaced by U+FFFD). Numbers are plain decimal integers. There is no
// whitespace outside strings.
//
// # Hash
//
// hash is the lower-case hex SHA-256 of the record's canonical bytes: the
// line exactly as written minus its trailing newline and minus the
// `,"hash":"<64 hex>"` that precedes the final `}`. Equivalently, since the
// encoding above is jq's own, the bytes `jq -cj 'del(.hash)'` prints for the
// line. Either re-computes it:
//
//	# byte-exact, needs only sed:
//	sed -n 5p audit.log | sed -E 's/,"hash":"[0-9a-f]{64}"}$/}/' | tr -d '\n' | sha256sum
//	# with jq:
//	sed -n 5p audit.log | jq -cj 'del(.hash)' | sha256sum
//	sed -n 5p audit.log | jq -r .hash
//
// and `jq -r .prev` of line 6 must equal line 5's hash. A whole file, with
// no credlet binary (it does not check seq, which Verify does):
//
//	prev=""; n=0; while IFS= read -r l; do n=$((n+1))
//	  h=$(printf '%s' "$l" | jq -cj 'del(.hash)' | sha256sum | cut -c1-64)
//	  [ "$h" = "$(printf '%s' "$l" | jq -r .hash)" ] && [ "$(printf '%s' "$l" | jq -r .prev)" = "$prev" ] ||
//	    { echo "broken at line $n"; break; }
//	  prev=$h; done < audit.log
//
// # Verifying
//
// Verify (credlet-agent audit verify FILE) checks every line: canonical
// form, hash, seq counting up from 1 by one, prev equal to the previous
// hash. It names the first bad line: edited (content or form), removed or
// moved (seq or prev), duplicated, malformed, or truncated (a last line
// without newline or cut mid-record).
//
// The chain makes edits evident, not impossible: whoever can rewrite the
// whole file can recompute every hash after an edit, and lines cut from the
// end at a line boundary leave no trace in the file. Ship the trail off the
// node, or keep the last seq and hash elsewhere (Logger.Collector exports
// them as credlet_audit_last_seq and credlet_audit_last_hash_prefix), to
// close those gaps.
//
// # Files
//
// Open appends to a file with mode 0600, holds an flock so that two agents
// never interleave one chain, and continues the chain from the file's last
// record, so a restarted agent does not break it. "-" is stdout, where each
// process starts a new chain. A last line torn by a crash is ended with a
// newline and followed by a gap record (count 1) that continues the chain
// from the record before it; Verify still reports the torn line.
package audit
