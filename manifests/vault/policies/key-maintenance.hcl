# credlet-key-maintenance: what the key-maintenance CronJob needs for
# `credlet-agent creds keys` and `creds rewrap`: read the Transit key's
# versions, rewrap ciphertext to the latest key version, and write the
# result as a new KV version (check-and-set) of a set that already exists,
# noting in the set's custom metadata when its values were last rotated.
# It cannot encrypt or decrypt, create or delete a set: rewrap takes
# ciphertext in and gives ciphertext out, and plain fields are carried over
# as they are.
path "@KV_MOUNT@/metadata/partners/*" {
  capabilities = ["read", "list", "update"]
  # Only the custom metadata (rewrap records rewrapped_version and
  # rotated_at there), never max_versions or delete_version_after, which
  # could trim the version history.
  allowed_parameters = {
    "custom_metadata" = []
  }
}
path "@KV_MOUNT@/data/partners/*" {
  capabilities = ["read", "update"]
}
path "@TRANSIT_MOUNT@/rewrap/@TRANSIT_KEY@" {
  capabilities = ["update"]
}
path "@TRANSIT_MOUNT@/keys/@TRANSIT_KEY@" {
  capabilities = ["read"]
}
