// Package e2e tests credlet-injector end to end on real servers (see
// internal/testenv): the injector runs as registered by a
// MutatingWebhookConfiguration (objectSelector credlet.io/inject=true,
// failurePolicy Fail, sideEffects None, reinvocationPolicy IfNeeded) of a
// real kube-apiserver; pods created through client-go come back injected and
// validated, denials reach the client, unlabelled pods are untouched; and
// the agent, run locally with exactly the args and env the stored pod holds,
// logs in to a real Vault with a TokenRequest token of the pod's
// ServiceAccount, serves the credential over its socket and picks up a
// rotation.
//
// It holds tests only.
package e2e
