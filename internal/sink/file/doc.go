// Package file owns the credential files on the pod's tmpfs, for apps that
// read files rather than the socket.
//
// Layout of one credential set under the secrets directory:
//
//	<dir>/<name>/..data -> ..2025_03_01_12_00_00.123456789   (swapped by one rename)
//	<dir>/<name>/..2025_03_01_12_00_00.123456789/            (the version's files)
//	<dir>/<name>/api_key -> ..data/api_key                   format=files (default)
//	<dir>/<name>/credentials.json -> ..data/credentials.json format=json
//	<dir>/<name>/credentials.env -> ..data/credentials.env   format=env
//	<dir>/<name>/..data/VERSION                              the KV version
//
// A new version is written the way kubelet's AtomicWriter does it: a fresh
// ..<timestamp> directory, every file written and fsynced (mode Options.Mode,
// 0400 by default, owner Options.UID/GID), the directory fsynced, then one
// rename(2) of a ..data_tmp symlink over ..data publishes all files at once;
// the per-field symlinks are created or removed after the swap, and the old
// directory is removed. Leftovers of a crash (..<timestamp> directories that
// ..data does not point to, temporary links) are removed when Run starts.
//
// Planted links: the secrets directory is shared with the app's
// containers, so the sink trusts nothing in it. Every path below
// --secrets-dir is created, read, renamed and removed relative to a
// directory handle the sink opened itself (openat, mkdirat, symlinkat,
// renameat, unlinkat), never following a symlink (O_NOFOLLOW): a symlink
// where a set directory belongs is removed and replaced by a directory
// (one WARN line), a directory where ..data belongs is removed, and a
// planted link is only ever unlinked, never followed, chmod'ed through or
// written into. Every 10s (and at each new version) Run checks that each
// set's ..data still names the version directory it made, and writes the
// current version again (one WARN line) if someone changed it. The
// --secrets-dir path itself is the operator's and is followed.
//
// Locking: one writer at a time; Versions (what /readyz asks) takes a
// separate lock that is never held across a write or an fsync.
//
// Reading consistently: each file on its own is always one version. To read
// several fields of one version, open the ..data directory once and read the
// files relative to it (openat), retrying if a file has gone (the version
// was replaced meanwhile); or use format=json or env, a single file.
//
// format=env writes KEY='value' lines: keys are the field names upper-cased
// with every character outside [A-Z0-9_] turned into '_' (and a leading '_'
// before a digit); values are single-quoted for POSIX shells, with each
// single quote inside written as quote, backslash, quote, quote:
//
//	API_SECRET='it'\''s'
//
// Load it with `set -a; . credentials.env; set +a`. Two fields that map to
// one key, or a value holding a NUL byte, make the version fail to write
// (the last good files stay).
//
// Memory: values go from the store's locked views straight into the files;
// the JSON and env encodings are built in a securemem buffer that is wiped
// after the write. While a version is current the agent keeps each of its
// files mmap'ed, mlock'ed and MADV_DONTDUMP, so tmpfs cannot swap those pages
// out; they are unmapped when the version is replaced. The locked bytes are
// reported as credlet_memory_locked{scope="files"}.
package file
