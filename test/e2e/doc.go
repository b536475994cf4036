// Package e2e runs the real credlet-agent binary against a real Vault and
// checks what a security team cares about end to end: no secret value in
// anything the agent writes outside the secrets directory, a verifiable audit
// trail whose read records add up to the reads made, and Transit-encrypted
// fields delivered decrypted.
package e2e
