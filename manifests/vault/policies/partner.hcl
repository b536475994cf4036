# credlet-partner: what an agent in a partner's namespace may do. The path
# is templated on the login's metadata (service_account_namespace, which
# Kubernetes auth sets and the jwt role maps from the token's
# kubernetes.io/namespace claim), so one policy serves every partner and a
# pod in namespace N reads only secret/partners/N/. setup.sh fills in the
# @...@ placeholders (the auth mount's accessor among them) before writing
# it: credlet-partner for the kubernetes mount, credlet-partner-jwt for the
# jwt mount.

# The credential sets: metadata (polled; no values) and data (read on a
# new version).
path "@KV_MOUNT@/metadata/partners/{{identity.entity.aliases.@AUTH_ACCESSOR@.metadata.service_account_namespace}}/*" {
  capabilities = ["read"]
}
path "@KV_MOUNT@/data/partners/{{identity.entity.aliases.@AUTH_ACCESSOR@.metadata.service_account_namespace}}/*" {
  capabilities = ["read"]
}

# Decrypt Transit fields. The key is derived: a partner's ciphertext is
# bound to its context, and the KV policy above keeps other partners'
# ciphertext out of reach in the first place.
path "@TRANSIT_MOUNT@/decrypt/@TRANSIT_KEY@" {
  capabilities = ["update"]
}
