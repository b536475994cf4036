// Package fleet runs many simulated credlet agents in one process, for the
// reliability tests and the benchmark's fleet phase: each agent has its own
// Vault client (its own connections), its own token (a fixed one, or its
// own login kept alive by the agent's lease manager), its own store, and
// one of the agent's own Vault sources per credential set. Nothing here is
// a model of the agent: the sources, the login methods, the token lifetime
// and the store are the agent's code; only the process around them (socket,
// files, metrics endpoint) is left out.
//
// A Fleet records when each agent's store first served each version of
// each set (CommittedAt, WaitVersion) and checks what is served (Check).
// AuditedReads, Rate and PerSecond read the request rate a fleet sent from
// Vault's file audit device, which records refused requests too.
package fleet
