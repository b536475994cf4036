// Package store owns the credential sets the agent serves.
//
// One writer (the sources) commits versions; any number of readers (socket,
// file sink, notify) take immutable snapshots. A commit packs the fields into
// one securemem.Buffer, wipes the caller's plaintext, and publishes the new
// Set with an atomic pointer swap. The previous version is retained as the
// rollback pointer; an older one is wiped and freed as soon as no reader
// holds it (reference counted: Acquire / Release).
//
// Readers encode values straight from those views: WriteFieldsJSON and
// WriteJSONString stream a set's fields as JSON into a writer (a socket
// response, a file) without making Go strings of them.
//
// Subscribers get a coalescing notification: a channel buffered to one with
// non-blocking sends, so a burst of commits wakes a slow reader once.
package store
