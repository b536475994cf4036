// Package annotation owns the credlet.io/* pod annotations: one schema table
// (key, default, allowed values, doc, parser) that turns a pod's annotations
// into one typed Spec, the denial messages for unknown keys and bad values,
// and the README's annotation table rendered from the same schema.
//
// Per-credential annotations are fed to credspec.Build, so the injector
// accepts exactly what the agent's --credential flag will parse.
// Defaults that depend on the injector's configuration (Vault address,
// resources, sidecar mode) are left unset here and resolved by package mutate;
// nothing is ever written back into the pod except credlet.io/status.
//
//go:generate go test -run TestREADMEAnnotations -update .
package annotation
