#!/usr/bin/env bash
# Sets Vault up for credlet. Safe to run again (it converges).
#
#   VAULT_ADDR=https://vault.example:8200 VAULT_TOKEN=<admin token> \
#   PARTNERS="acme beta" K8S_HOST=https://<apiserver>:6443 \
#   K8S_CA_CERT=ca.crt TOKEN_REVIEWER_JWT=reviewer.jwt \
#   APPROLE_BOTS="acme" ./manifests/vault/setup.sh
#
#   # jwt auth as well (or instead, with SKIP_K8S=1):
#   JWT_ISSUER="$(kubectl get --raw /.well-known/openid-configuration | jq -r .issuer)" ...
#
# What it does:
#   - KV v2 at $KV_MOUNT (secret), Transit at $TRANSIT_MOUNT (transit) with
#     the derived key $TRANSIT_KEY (credlet-partners), which Vault rotates
#     every $TRANSIT_ROTATE_PERIOD (720h = 30 days; an existing key with
#     auto-rotation off or longer gets it too);
#   - Kubernetes auth at $K8S_AUTH_MOUNT (kubernetes), pointed at the
#     cluster, and the role $ROLE (credlet-partner) for the partners'
#     namespaces, requiring audience "vault" (the injector projects such a
#     token); its policy is templated on the login's namespace, so a pod in
#     namespace N reads only $KV_MOUNT/partners/N/;
#   - with JWT_ISSUER, jwt auth at $JWT_AUTH_MOUNT (jwt) verifying the
#     cluster's service-account tokens itself (OIDC discovery at the issuer,
#     or the public keys in JWT_PUBKEYS; no TokenReview call), and the role
#     $ROLE there: audience "vault", the token's kubernetes.io namespace one
#     of PARTNERS, mapped (with the service-account name) to the same alias
#     metadata Kubernetes auth sets, so the policy credlet-partner-MOUNT
#     (credlet-partner-jwt by default: the same template on this mount's
#     accessor) gives a pod in namespace N
#     $KV_MOUNT/partners/N/ only (annotate pods with credlet.io/auth: jwt);
#   - the policy credlet-operator, for `credlet-agent creds`;
#   - the policy credlet-key-maintenance and (with Kubernetes auth) the role
#     $MAINT_ROLE for the CronJob in manifests/key-maintenance, which runs
#     `creds keys` and `creds rewrap` per partner;
#   - for each partner in APPROLE_BOTS, an AppRole credlet-bot-<partner> for
#     bots outside Kubernetes, reading only that partner's prefix.
#
# Inputs (environment):
#   VAULT_ADDR, VAULT_TOKEN   required; the token needs to manage mounts, auth and policies
#   PARTNERS                  required; space-separated partner names = their namespaces
#   K8S_HOST                  the apiserver URL as Vault reaches it (required unless SKIP_K8S=1)
#   K8S_CA_CERT               file: the apiserver's CA (optional for a publicly trusted apiserver)
#   TOKEN_REVIEWER_JWT        file: token of a reviewer bound to system:auth-delegator
#                             (token-reviewer.yaml); omit when Vault runs in the cluster
#   APPROLE_BOTS              optional; partners that get an AppRole
#   JWT_ISSUER                optional; the cluster's service-account issuer (the "iss" of its
#                             tokens); enables jwt auth
#   JWT_PUBKEYS               file: PEM public keys that sign service-account tokens (the
#                             apiserver's --service-account-key-file); without it Vault uses OIDC
#                             discovery at JWT_ISSUER, which the apiserver serves to anonymous
#                             clients once jwt-issuer-discovery.yaml is applied
#   JWT_CA_CERT               file: CA of the discovery URL (default K8S_CA_CERT)
#   TRANSIT_ROTATE_PERIOD     auto_rotate_period of the Transit key: whole hours, 1h to 720h (default 720h)
#   KV_MOUNT TRANSIT_MOUNT TRANSIT_KEY K8S_AUTH_MOUNT JWT_AUTH_MOUNT APPROLE_MOUNT ROLE TOKEN_TTL TOKEN_MAX_TTL
#   MAINT_ROLE MAINT_NAMESPACE MAINT_SERVICE_ACCOUNT   the key-maintenance CronJob's login
#                             (default credlet-key-maintenance, credlet-system, credlet-key-maintenance)
#   VAULT                     the vault CLI (default: vault on PATH)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
VAULT=${VAULT:-vault}
KV_MOUNT=${KV_MOUNT:-secret}
TRANSIT_MOUNT=${TRANSIT_MOUNT:-transit}
TRANSIT_KEY=${TRANSIT_KEY:-credlet-partners}
K8S_AUTH_MOUNT=${K8S_AUTH_MOUNT:-kubernetes}
JWT_AUTH_MOUNT=${JWT_AUTH_MOUNT:-jwt}
JWT_ISSUER=${JWT_ISSUER:-}
APPROLE_MOUNT=${APPROLE_MOUNT:-approle}
ROLE=${ROLE:-credlet-partner}
TOKEN_TTL=${TOKEN_TTL:-1h}
TOKEN_MAX_TTL=${TOKEN_MAX_TTL:-24h}
TRANSIT_ROTATE_PERIOD=${TRANSIT_ROTATE_PERIOD:-720h}
MAINT_ROLE=${MAINT_ROLE:-credlet-key-maintenance}
MAINT_NAMESPACE=${MAINT_NAMESPACE:-credlet-system}
MAINT_SERVICE_ACCOUNT=${MAINT_SERVICE_ACCOUNT:-credlet-key-maintenance}
APPROLE_BOTS=${APPROLE_BOTS:-}
SKIP_K8S=${SKIP_K8S:-0}

say() { printf '>> %s\n' "$*"; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

: "${VAULT_ADDR:?setup.sh: set VAULT_ADDR}"
: "${PARTNERS:?setup.sh: set PARTNERS to the partner names (= their namespaces), e.g. PARTNERS=\"acme beta\"}"
command -v "$VAULT" >/dev/null || die "no vault CLI ($VAULT); install it or set VAULT=/path/to/vault"
for p in $PARTNERS $APPROLE_BOTS; do
	[[ $p =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || die "partner \"$p\": allowed a namespace name (lower-case letters, digits, '-')"
done
for p in $APPROLE_BOTS; do
	[[ " $PARTNERS " == *" $p "* ]] || die "APPROLE_BOTS names \"$p\", which is not in PARTNERS"
done
[[ $MAINT_NAMESPACE =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || die "MAINT_NAMESPACE \"$MAINT_NAMESPACE\": allowed a namespace name (lower-case letters, digits, '-')"
[[ $MAINT_SERVICE_ACCOUNT =~ ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ ]] || die "MAINT_SERVICE_ACCOUNT \"$MAINT_SERVICE_ACCOUNT\": allowed a ServiceAccount name (lower-case letters, digits, '-', '.')"
# The card asks for keys rotated at least every 30 days.
[[ $TRANSIT_ROTATE_PERIOD =~ ^[0-9]{1,3}h$ ]] && rotate_hours=${TRANSIT_ROTATE_PERIOD%h} && ((10#$rotate_hours >= 1 && 10#$rotate_hours <= 720)) ||
	die "TRANSIT_ROTATE_PERIOD \"$TRANSIT_ROTATE_PERIOD\": allowed whole hours from 1h to 720h (30 days), e.g. 720h"
rotate_seconds=$((10#$rotate_hours * 3600))
"$VAULT" token lookup >/dev/null 2>&1 || die "cannot use VAULT_TOKEN against $VAULT_ADDR (vault token lookup failed)"

# render FILE [PARTNER]: a policy with its placeholders filled in.
render() {
	sed -e "s|@KV_MOUNT@|$KV_MOUNT|g" -e "s|@TRANSIT_MOUNT@|$TRANSIT_MOUNT|g" -e "s|@TRANSIT_KEY@|$TRANSIT_KEY|g" \
		-e "s|@AUTH_ACCESSOR@|${accessor:-}|g" -e "s|@PARTNER@|${2:-}|g" "$here/policies/$1.hcl"
}

mounted() { "$VAULT" read -field=type "sys/mounts/$1" >/dev/null 2>&1; }
auth_enabled() { "$VAULT" read -field=type "sys/auth/$1" >/dev/null 2>&1; }

# 1. KV v2 and Transit.
if mounted "$KV_MOUNT"; then
	"$VAULT" read -field=options "sys/mounts/$KV_MOUNT" | grep -q 'version:2' ||
		die "$KV_MOUNT/ is KV version 1; credlet needs KV v2 (vault kv enable-versioning $KV_MOUNT/)"
	say "KV v2 already at $KV_MOUNT/"
else
	"$VAULT" secrets enable -path="$KV_MOUNT" kv-v2 >/dev/null
	say "enabled KV v2 at $KV_MOUNT/"
fi
if mounted "$TRANSIT_MOUNT"; then
	say "Transit already at $TRANSIT_MOUNT/"
else
	"$VAULT" secrets enable -path="$TRANSIT_MOUNT" transit >/dev/null
	say "enabled Transit at $TRANSIT_MOUNT/"
fi
if derived=$("$VAULT" read -field=derived "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" 2>/dev/null); then
	[[ $derived == true ]] || die "Transit key $TRANSIT_KEY exists but is not derived; pick another TRANSIT_KEY"
	say "Transit key $TRANSIT_KEY (derived) already there"
	# Vault reports auto_rotate_period in seconds (0: off). A shorter period
	# an operator chose is kept; off or longer than ours is brought down.
	period=$("$VAULT" read -field=auto_rotate_period "$TRANSIT_MOUNT/keys/$TRANSIT_KEY")
	period=${period%s}
	if [[ ! $period =~ ^[0-9]+$ ]] || ((period == 0 || period > rotate_seconds)); then
		"$VAULT" write "$TRANSIT_MOUNT/keys/$TRANSIT_KEY/config" auto_rotate_period="$TRANSIT_ROTATE_PERIOD" >/dev/null
		say "set auto_rotate_period=$TRANSIT_ROTATE_PERIOD on $TRANSIT_KEY (was ${period:-unset}s)"
	else
		say "Transit key $TRANSIT_KEY rotates every ${period}s already"
	fi
else
	"$VAULT" write -f "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" derived=true auto_rotate_period="$TRANSIT_ROTATE_PERIOD" >/dev/null
	say "created Transit key $TRANSIT_KEY with derived keys (context = partner), rotated every $TRANSIT_ROTATE_PERIOD"
fi

# 2. Kubernetes auth and the partners' role.
if [[ $SKIP_K8S != 1 ]]; then
	: "${K8S_HOST:?setup.sh: set K8S_HOST to the apiserver URL as Vault reaches it (or SKIP_K8S=1)}"
	auth_enabled "$K8S_AUTH_MOUNT" || { "$VAULT" auth enable -path="$K8S_AUTH_MOUNT" kubernetes >/dev/null && say "enabled Kubernetes auth at $K8S_AUTH_MOUNT/"; }
	cfg=(kubernetes_host="$K8S_HOST")
	if [[ -n ${K8S_CA_CERT:-} ]]; then
		[[ -r $K8S_CA_CERT ]] || die "K8S_CA_CERT $K8S_CA_CERT is not readable"
		cfg+=(kubernetes_ca_cert=@"$K8S_CA_CERT")
	fi
	if [[ -n ${TOKEN_REVIEWER_JWT:-} ]]; then
		[[ -r $TOKEN_REVIEWER_JWT ]] || die "TOKEN_REVIEWER_JWT $TOKEN_REVIEWER_JWT is not readable"
		cfg+=(token_reviewer_jwt=@"$TOKEN_REVIEWER_JWT" disable_local_ca_jwt=true)
	fi
	"$VAULT" write "auth/$K8S_AUTH_MOUNT/config" "${cfg[@]}" >/dev/null
	say "pointed $K8S_AUTH_MOUNT/ at $K8S_HOST"
	accessor=$("$VAULT" read -field=accessor "sys/auth/$K8S_AUTH_MOUNT")
	render partner | "$VAULT" policy write credlet-partner - >/dev/null
	say "wrote policy credlet-partner (templated on the login's namespace; accessor $accessor)"
	"$VAULT" write "auth/$K8S_AUTH_MOUNT/role/$ROLE" \
		bound_service_account_names='*' \
		bound_service_account_namespaces="$(tr -s ' ' ',' <<<"$PARTNERS" | sed 's/^,//; s/,$//')" \
		audience=vault token_policies=credlet-partner \
		token_ttl="$TOKEN_TTL" token_max_ttl="$TOKEN_MAX_TTL" >/dev/null
	say "wrote role $ROLE for namespaces: $PARTNERS (annotate pods with credlet.io/role: $ROLE)"
	"$VAULT" write "auth/$K8S_AUTH_MOUNT/role/$MAINT_ROLE" \
		bound_service_account_names="$MAINT_SERVICE_ACCOUNT" \
		bound_service_account_namespaces="$MAINT_NAMESPACE" \
		audience=vault token_policies=credlet-key-maintenance \
		token_ttl=1h token_max_ttl=2h >/dev/null
	say "wrote role $MAINT_ROLE for $MAINT_NAMESPACE/$MAINT_SERVICE_ACCOUNT (the key-maintenance CronJob)"
fi

# 2b. jwt auth: the same partners' role, verified without TokenReview.
if [[ -n $JWT_ISSUER ]]; then
	auth_enabled "$JWT_AUTH_MOUNT" || { "$VAULT" auth enable -path="$JWT_AUTH_MOUNT" jwt >/dev/null && say "enabled jwt auth at $JWT_AUTH_MOUNT/"; }
	if [[ -n ${JWT_PUBKEYS:-} ]]; then
		[[ -r $JWT_PUBKEYS ]] || die "JWT_PUBKEYS $JWT_PUBKEYS is not readable"
		grep -q 'BEGIN PUBLIC KEY' "$JWT_PUBKEYS" || die "JWT_PUBKEYS $JWT_PUBKEYS holds no PEM public key (want -----BEGIN PUBLIC KEY-----)"
		"$VAULT" write "auth/$JWT_AUTH_MOUNT/config" jwt_validation_pubkeys=@"$JWT_PUBKEYS" bound_issuer="$JWT_ISSUER" >/dev/null
		say "pointed $JWT_AUTH_MOUNT/ at the keys in $JWT_PUBKEYS (issuer $JWT_ISSUER)"
	else
		cfg=(oidc_discovery_url="$JWT_ISSUER")
		ca=${JWT_CA_CERT:-${K8S_CA_CERT:-}}
		if [[ -n $ca ]]; then
			[[ -r $ca ]] || die "JWT_CA_CERT $ca is not readable"
			cfg+=(oidc_discovery_ca_pem=@"$ca")
		fi
		"$VAULT" write "auth/$JWT_AUTH_MOUNT/config" "${cfg[@]}" >/dev/null ||
			die "Vault could not use OIDC discovery at $JWT_ISSUER (apply manifests/vault/jwt-issuer-discovery.yaml so the apiserver serves it without credentials, or set JWT_PUBKEYS)"
		say "pointed $JWT_AUTH_MOUNT/ at OIDC discovery of $JWT_ISSUER"
	fi
	accessor=$("$VAULT" read -field=accessor "sys/auth/$JWT_AUTH_MOUNT")
	jwt_policy=credlet-partner-${JWT_AUTH_MOUNT//\//-}
	render partner | "$VAULT" policy write "$jwt_policy" - >/dev/null
	say "wrote policy $jwt_policy (templated on the login's namespace; accessor $accessor)"
	namespaces=$(printf '"%s",' $PARTNERS)
	"$VAULT" write "auth/$JWT_AUTH_MOUNT/role/$ROLE" - >/dev/null <<-JSON
	{
	  "role_type": "jwt",
	  "user_claim": "sub",
	  "bound_audiences": ["vault"],
	  "bound_claims": {"/kubernetes.io/namespace": [${namespaces%,}]},
	  "claim_mappings": {
	    "/kubernetes.io/namespace": "service_account_namespace",
	    "/kubernetes.io/serviceaccount/name": "service_account_name"
	  },
	  "token_policies": ["$jwt_policy"],
	  "token_ttl": "$TOKEN_TTL",
	  "token_max_ttl": "$TOKEN_MAX_TTL"
	}
	JSON
	say "wrote jwt role $ROLE for namespaces: $PARTNERS (annotate pods with credlet.io/auth: jwt and credlet.io/role: $ROLE)"
fi

# 3. The operators' policy.
render operator | "$VAULT" policy write credlet-operator - >/dev/null
say "wrote policy credlet-operator (for credlet-agent creds; create a token with: vault token create -policy=credlet-operator)"
render key-maintenance | "$VAULT" policy write credlet-key-maintenance - >/dev/null
say "wrote policy credlet-key-maintenance (creds keys and creds rewrap; no encrypt, decrypt or delete)"

# 4. AppRoles for bots outside Kubernetes.
if [[ -n $APPROLE_BOTS ]]; then
	auth_enabled "$APPROLE_MOUNT" || { "$VAULT" auth enable -path="$APPROLE_MOUNT" approle >/dev/null && say "enabled AppRole at $APPROLE_MOUNT/"; }
	for p in $APPROLE_BOTS; do
		render approle-partner "$p" | "$VAULT" policy write "credlet-bot-$p" - >/dev/null
		"$VAULT" write "auth/$APPROLE_MOUNT/role/credlet-bot-$p" token_policies="credlet-bot-$p" \
			token_ttl="$TOKEN_TTL" token_max_ttl="$TOKEN_MAX_TTL" secret_id_ttl=720h secret_id_num_uses=0 >/dev/null
		say "wrote AppRole credlet-bot-$p (reads $KV_MOUNT/partners/$p/ only); role_id: vault read -field=role_id auth/$APPROLE_MOUNT/role/credlet-bot-$p/role-id"
		say "  give the bot a response-wrapped secret_id: vault write -wrap-ttl=10m -f auth/$APPROLE_MOUNT/role/credlet-bot-$p/secret-id"
	done
fi
say "done"
