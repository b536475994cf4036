// Package securemem owns the memory credential plaintext lives in.
//
// A Buffer comes, in order of preference, from memfd_secret(2) (Linux 5.14+
// with secretmem: pages locked, never dumped, and removed from the kernel's
// direct map, so even root reading /proc/PID/mem cannot see them), or from an
// anonymous mmap that is mlock'ed and marked MADV_DONTDUMP. A Buffer is wiped
// (zeroed) and unmapped by Free. Harden makes the process non-dumpable, sets
// RLIMIT_CORE to 0 and tries mlockall.
//
// Where plaintext still passes through ordinary Go memory, and for how long:
//
//   - Vault responses are JSON-decoded by github.com/hashicorp/vault/api into
//     map[string]any strings; the source copies each field into a Buffer at
//     once and drops the map. Go strings cannot be zeroed, so those copies
//     live until the garbage collector reuses their memory.
//   - The socket API encodes a response straight from the Buffer into the
//     connection's write buffer, which net/http reuses per connection.
//   - The files on the tmpfs are plaintext by design; their pages are kept
//     mlock'ed by the file sink while current.
//
// What could not be locked is counted in Stats and reported, never hidden.
package securemem
