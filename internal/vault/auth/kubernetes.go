package auth

import (
	"context"

	"github.com/hashicorp/vault/api"
)

// Kubernetes logs in with the service-account token in tokenFile (a
// projected token with audience "vault"), re-read at every login because
// the kubelet rotates it. mount defaults to "kubernetes".
func Kubernetes(role, mount, tokenFile string) Method {
	return &kubernetes{role: role, mount: cleanMount(mount, "kubernetes"), tokenFile: tokenFile}
}

type kubernetes struct {
	role, mount, tokenFile string
}

func (k *kubernetes) Name() string { return "kubernetes" }

func (k *kubernetes) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	jwt, err := readFile("service account token", k.tokenFile)
	if err != nil {
		return nil, err
	}
	defer clear(jwt)
	return login(ctx, c, k.mount, map[string]any{"role": k.role, "jwt": string(jwt)})
}
