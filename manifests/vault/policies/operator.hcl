# credlet-operator: what `credlet-agent creds` needs to manage partners'
# credentials: write new versions (check-and-set), read them back to merge a
# rotation, soft-delete (revoke), list, and encrypt with Transit. It cannot
# decrypt: an operator writes ciphertext, only agents read plaintext.
path "@KV_MOUNT@/data/partners/*" {
  capabilities = ["create", "update", "read"]
}
# create, update: custom metadata (creds put|rotate --expires-at, expires-at in a
# plan; put --expires-at writes it before the set exists).
path "@KV_MOUNT@/metadata/partners/*" {
  capabilities = ["create", "read", "list", "update"]
}
path "@KV_MOUNT@/delete/partners/*" {
  capabilities = ["update"]
}
path "@KV_MOUNT@/undelete/partners/*" {
  capabilities = ["update"]
}
path "@TRANSIT_MOUNT@/encrypt/@TRANSIT_KEY@" {
  capabilities = ["update"]
}
# creds rewrap: ciphertext to the key's latest version, without plaintext.
path "@TRANSIT_MOUNT@/rewrap/@TRANSIT_KEY@" {
  capabilities = ["update"]
}
# Lets `creds` check that the key exists and is derived before encrypting,
# and `creds keys` report its versions and rotation period.
path "@TRANSIT_MOUNT@/keys/@TRANSIT_KEY@" {
  capabilities = ["read"]
}
