package kv_test

import "github.com/hashicorp/vault/api"

// apiTokenRequest is a token with only the default policy.
var apiTokenRequest = api.TokenCreateRequest{Policies: []string{"default"}, NoParent: true, TTL: "10m"}
