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
//   - Vault responses: internal/source reads each body into one byte slice,
//     decodes the values from it into fresh slices and wipes the body;
//     store.Commit copies those into a Buffer and wipes them. No Go string
//     holds a value, but the bytes sit in the Go heap for the length of one
//     fetch. net/http's transport has read the TLS records into its own
//     buffers, which are not wiped.
//   - The socket API encodes an answer into a locked scratch Buffer and
//     writes it with one writev(2); no heap copy (see internal/socketapi).
//   - The file sink writes values from their views straight into the files,
//     and builds the json/env encodings in a Buffer.
//   - The files on the tmpfs are plaintext by design; their pages are kept
//     mlock'ed by the file sink while current.
//   - The blue/green verify request is encoded into a Buffer; net/http's
//     transport copies it into its write buffer.
//
// Measured on the dev agent (file source): no copy of a value anywhere in
// the agent's readable memory (/proc/PID/mem, the delivered files aside)
// after start, after 100,000 socket reads and after rotations; see
// agent/client's memory test.
//
// Harden locks the whole process with mlockall(MCL_CURRENT|MCL_FUTURE|
// MCL_ONFAULT) when it cannot fail later (CAP_IPC_LOCK or no memlock
// limit): ONFAULT locks pages as they are first touched, so the Go
// runtime's large address reservations are not faulted in (without it the
// agent's RSS grew from 15 MiB to 160 MiB).
//
// What could not be locked is counted in Stats and reported, never hidden.
package securemem
