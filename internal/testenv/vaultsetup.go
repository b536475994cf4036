package testenv

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/hashicorp/vault/api"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// setupTimeout bounds each configuration call below: they take no context
// because the server is local and they are called from test set-up.
const setupTimeout = 30 * time.Second

// KubernetesAudience is the audience every Kubernetes auth role created by
// CreateKubernetesRole requires, the one credlet's projected tokens carry.
const KubernetesAudience = "vault"

// Reviewer identity ConfigureKubernetesAuth creates in the apiserver.
const (
	ReviewerNamespace      = "credlet-testenv"
	ReviewerServiceAccount = "vault-token-reviewer"
)

// EnableFileAudit enables a file audit device writing JSON lines to file
// (an absolute path the server can write). Enabling the same file twice is
// a no-op. Every request to this shared server is then audited, other tests'
// too: filter lines by path, or call DisableFileAudit when done.
func (v *Vault) EnableFileAudit(file string) error {
	v.auditMu.Lock()
	defer v.auditMu.Unlock()
	if _, ok := v.audits[file]; ok {
		return nil
	}
	if v.audits == nil {
		v.audits = map[string]string{}
	}
	device := fmt.Sprintf("file-%d", len(v.audits)+1)
	for v.auditDeviceTaken(device) {
		device += "x"
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	err := v.Client().Sys().EnableAuditWithOptionsWithContext(ctx, device, &api.EnableAuditOptions{
		Type:    "file",
		Options: map[string]string{"file_path": file},
	})
	if err != nil {
		return fmt.Errorf("enable file audit %s: %w", file, err)
	}
	v.audits[file] = device
	return nil
}

func (v *Vault) auditDeviceTaken(device string) bool {
	for _, d := range v.audits {
		if d == device {
			return true
		}
	}
	return false
}

// DisableFileAudit disables the audit device EnableFileAudit made for file.
func (v *Vault) DisableFileAudit(file string) error {
	v.auditMu.Lock()
	defer v.auditMu.Unlock()
	device, ok := v.audits[file]
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := v.Client().Sys().DisableAuditWithContext(ctx, device); err != nil {
		return fmt.Errorf("disable file audit %s: %w", file, err)
	}
	delete(v.audits, file)
	return nil
}

// WritePolicy creates or replaces the ACL policy name.
func (v *Vault) WritePolicy(name, hcl string) error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := v.Client().Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
		return fmt.Errorf("write policy %s: %w", name, err)
	}
	return nil
}

// CreateAppRole creates (or replaces) the AppRole role name at approle/ with
// the given token policies and TTLs (zero: the mount's default), and returns
// its role_id and a fresh secret_id.
func (v *Vault) CreateAppRole(name string, policies []string, tokenTTL, tokenMaxTTL time.Duration) (roleID, secretID string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c := v.Client().Logical()
	role := path.Join("auth", AppRoleMount, "role", name)
	_, err = c.WriteWithContext(ctx, role, map[string]any{
		"token_policies": policies,
		"token_ttl":      int(tokenTTL.Seconds()),
		"token_max_ttl":  int(tokenMaxTTL.Seconds()),
	})
	if err != nil {
		return "", "", fmt.Errorf("create approle %s: %w", name, err)
	}
	s, err := c.ReadWithContext(ctx, role+"/role-id")
	if err != nil {
		return "", "", fmt.Errorf("read approle %s role_id: %w", name, err)
	}
	roleID, err = stringField(s, "role_id")
	if err != nil {
		return "", "", fmt.Errorf("read approle %s role_id: %w", name, err)
	}
	s, err = c.WriteWithContext(ctx, role+"/secret-id", nil)
	if err != nil {
		return "", "", fmt.Errorf("create approle %s secret_id: %w", name, err)
	}
	secretID, err = stringField(s, "secret_id")
	if err != nil {
		return "", "", fmt.Errorf("create approle %s secret_id: %w", name, err)
	}
	return roleID, secretID, nil
}

func stringField(s *api.Secret, key string) (string, error) {
	if s == nil || s.Data == nil {
		return "", fmt.Errorf("empty response")
	}
	str, ok := s.Data[key].(string)
	if !ok || str == "" {
		return "", fmt.Errorf("response has no %s", key)
	}
	return str, nil
}

// ConfigureKubernetesAuth enables Kubernetes auth at mount ("kubernetes" when
// empty) and points it at k's apiserver: it creates the ServiceAccount
// ReviewerNamespace/ReviewerServiceAccount bound to ClusterRole
// system:auth-delegator, and gives Vault a 24 h token of it as
// token_reviewer_jwt, the apiserver URL and its CA. Calling it again for the
// same mount refreshes the configuration.
func (v *Vault) ConfigureKubernetesAuth(k *Kube, mount string) error {
	if mount == "" {
		mount = "kubernetes"
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	jwt, err := k.reviewerToken(ctx)
	if err != nil {
		return fmt.Errorf("kubernetes auth: %w", err)
	}
	if err := v.enableAuth(ctx, mount, "kubernetes"); err != nil {
		return fmt.Errorf("kubernetes auth: %w", err)
	}
	_, err = v.Client().Logical().WriteWithContext(ctx, path.Join("auth", mount, "config"), map[string]any{
		"kubernetes_host":      k.Config.Host,
		"kubernetes_ca_cert":   string(k.Config.CAData),
		"token_reviewer_jwt":   jwt,
		"disable_local_ca_jwt": true,
	})
	if err != nil {
		return fmt.Errorf("kubernetes auth: write %s/config: %w", mount, err)
	}
	return nil
}

// ReviewerToken creates the token reviewer identity (ServiceAccount
// ReviewerNamespace/ReviewerServiceAccount bound to ClusterRole
// system:auth-delegator) unless it exists, and returns a 24 h token for it
// (audience: the apiserver's own, so TokenReview accepts it): what
// manifests/vault/setup.sh takes as TOKEN_REVIEWER_JWT.
func (k *Kube) ReviewerToken(ctx context.Context) (string, error) { return k.reviewerToken(ctx) }

// reviewerToken creates the token reviewer identity and returns a token for
// it (audience: the apiserver's own, so TokenReview accepts it).
func (k *Kube) reviewerToken(ctx context.Context) (string, error) {
	if err := k.EnsureNamespace(ctx, ReviewerNamespace); err != nil {
		return "", err
	}
	if err := k.CreateServiceAccount(ctx, ReviewerNamespace, ReviewerServiceAccount); err != nil {
		return "", err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "credlet-testenv-vault-token-reviewer"},
		RoleRef: rbacv1.RoleRef{
			APIGroup: rbacv1.GroupName,
			Kind:     "ClusterRole",
			Name:     "system:auth-delegator",
		},
		Subjects: []rbacv1.Subject{{
			Kind:      rbacv1.ServiceAccountKind,
			Name:      ReviewerServiceAccount,
			Namespace: ReviewerNamespace,
		}},
	}
	_, err := k.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("bind %s to system:auth-delegator: %w", ReviewerServiceAccount, err)
	}
	return k.TokenRequest(ctx, ReviewerNamespace, ReviewerServiceAccount, "", 24*time.Hour)
}

// CreateKubernetesRole creates (or replaces) role at Kubernetes auth mount
// ("kubernetes" when empty), bound to the ServiceAccount names and
// namespaces given, requiring audience KubernetesAudience, with the given
// token policies and TTLs (zero: the mount's default).
func (v *Vault) CreateKubernetesRole(mount, role string, saNames, namespaces, policies []string, ttl, maxTTL time.Duration) error {
	if mount == "" {
		mount = "kubernetes"
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	_, err := v.Client().Logical().WriteWithContext(ctx, path.Join("auth", mount, "role", role), map[string]any{
		"bound_service_account_names":      saNames,
		"bound_service_account_namespaces": namespaces,
		"audience":                         KubernetesAudience,
		"token_policies":                   policies,
		"token_ttl":                        int(ttl.Seconds()),
		"token_max_ttl":                    int(maxTTL.Seconds()),
	})
	if err != nil {
		return fmt.Errorf("create kubernetes role %s/%s: %w", mount, role, err)
	}
	return nil
}
