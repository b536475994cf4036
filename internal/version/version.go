// Package version carries the build's version, stamped by the Makefile with
// -ldflags -X.
package version

// Set at link time; "dev" and "none" for a plain go build.
var (
	Version = "dev"
	Commit  = "none"
)

// String is "VERSION (COMMIT)".
func String() string { return Version + " (" + Commit + ")" }
