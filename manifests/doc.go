// Package manifests holds what a platform team applies to a cluster, and
// the tests that keep it honest:
//
//	default/     kustomize: namespace, injector Deployment (2 replicas,
//	             PodDisruptionBudget, anti-affinity, probes, non-root,
//	             read-only root), Service, MutatingWebhookConfiguration,
//	             cert-manager Issuer/Certificate, injector config, and
//	             ../monitoring (owned by the audit/metrics work)
//	vault/       setup.sh and HCL policies: Kubernetes auth, per-partner
//	             policies templated on the login's namespace, a derived
//	             Transit key, AppRoles for bots outside Kubernetes, and the
//	             token reviewer for a Vault outside the cluster
//
// The tests decode every YAML file here and under examples/deployments into
// its typed object, rejecting unknown fields; cross-check names, ports,
// flags and images between the pieces and the Dockerfile; create the
// objects on a real kube-apiserver (server-side dry run); run every
// example Deployment through the injector's mutation with default/config.yaml;
// build the Dockerfile's binaries with its own commands; and run
// vault/setup.sh against a real Vault and apiserver, then log in as a
// partner's pod and as an AppRole bot to prove what each may read.
package manifests
