// Package credspec owns the one description of a credential set that the
// agent's --credential flag, the injector's annotations and the agent's
// sources all share:
//
//	NAME=KV_PATH[;transit=KEY][;context=CTX][;fields=a,b][;format=files|json|env][;optional]
//
// Parse turns outside input into a validated Credential; Credential.String
// renders it back, so the injector can hand the agent exactly what it checked.
package credspec
