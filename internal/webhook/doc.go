// Package webhook owns credlet-injector's HTTP side: the /mutate edge that
// turns an AdmissionReview into a call to an Admitter (body size
// cap, content-type and method checks, panic recovery that still answers
// with the request's UID), the TLS server with /healthz and /readyz that
// drains in-flight requests on shutdown, the plain-HTTP metrics server, and
// the injector's Prometheus metrics on a registry the caller creates.
package webhook
