# credlet-bot-@PARTNER@: a bot outside Kubernetes (AppRole login) reading
# partner @PARTNER@'s credentials, and nothing else.
path "@KV_MOUNT@/metadata/partners/@PARTNER@/*" {
  capabilities = ["read"]
}
path "@KV_MOUNT@/data/partners/@PARTNER@/*" {
  capabilities = ["read"]
}
path "@TRANSIT_MOUNT@/decrypt/@TRANSIT_KEY@" {
  capabilities = ["update"]
}
