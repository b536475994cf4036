// Package testcert makes throwaway certificate authorities and serving
// certificates for the injector's tests: ECDSA P-256, short-lived, never
// written anywhere but a test's temp dir.
package testcert
