// Package injectorconfig owns credlet-injector's --config file: for each
// namespace (or namespace glob "prefix-*"), the KV path prefixes its pods may
// name and the defaults its agents get (Vault address and CA, agent image,
// auth mount, sidecar mode, resources, tmpfs size, IPC_LOCK). Unknown fields
// are errors, so a typo in the file stops the injector at start rather than
// silently widening or narrowing what a namespace may read.
//
// A namespace that is not in the file may not inject anything: the injector
// fails closed.
package injectorconfig
