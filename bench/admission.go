package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// The namespace of the benchmark pod, and the KV prefix credlet-injector's
// configuration lets it name.
const (
	admissionNamespace = "partner-bench"
	admissionKVPrefix  = "secret/partners/bench"
)

// podNamePlaceholder is the Pod's name in admissionReview; distinctReview
// replaces it to make every request's object different.
const podNamePlaceholder = "bot-7d9f8c6b5-x2x7k"

// distinctReview returns review with the n-th pod name: the same pod
// otherwise, but different bytes, so no cache can answer it.
func distinctReview(review []byte) func(n int64) []byte {
	return func(n int64) []byte {
		return bytes.Replace(review, []byte(podNamePlaceholder), fmt.Appendf(nil, "bot-7d9f8c6b5-%05d", n%100000), 1)
	}
}

// distinctRequest is the POST of distinctReview's n-th review.
func distinctRequest(path string, review []byte) func(n int64) []byte {
	body := distinctReview(review)
	return func(n int64) []byte { return postRequest(path, body(n)) }
}

// admissionReview is the one AdmissionReview both injectors get: a Pod
// carrying credlet's label and annotations and the Vault Agent Injector's,
// each injector acting on its own.
func admissionReview() []byte {
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name":      podNamePlaceholder,
			"namespace": admissionNamespace,
			"labels":    map[string]string{"app": "bot", "credlet.io/inject": "true"},
			"annotations": map[string]string{
				"credlet.io/role":                                 "bot",
				"credlet.io/credential.zerodha":                   admissionKVPrefix + "/zerodha",
				"vault.hashicorp.com/agent-inject":                "true",
				"vault.hashicorp.com/role":                        "bot",
				"vault.hashicorp.com/agent-inject-secret-zerodha": "secret/data/partners/bench/zerodha",
			},
		},
		"spec": map[string]any{
			"serviceAccountName": "bot",
			"securityContext":    map[string]any{"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true},
			"containers": []any{map[string]any{
				"name":      "bot",
				"image":     "registry.example.test/bot:1.0",
				"resources": map[string]any{"requests": map[string]string{"cpu": "100m", "memory": "64Mi"}},
				// What the ServiceAccount admission plugin adds before
				// webhooks run; vault-k8s requires it.
				"volumeMounts": []any{map[string]any{
					"name": "kube-api-access-bench", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true,
				}},
			}},
			"volumes": []any{map[string]any{
				"name": "kube-api-access-bench",
				"projected": map[string]any{"sources": []any{
					map[string]any{"serviceAccountToken": map[string]any{"path": "token", "expirationSeconds": 3607}},
					map[string]any{"configMap": map[string]any{"name": "kube-root-ca.crt", "items": []any{map[string]string{"key": "ca.crt", "path": "ca.crt"}}}},
				}},
			}},
		},
	}
	rawPod, _ := json.Marshal(pod)
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       "0b7a2f7e-8c1d-4c55-9d2a-benchbenchbe",
			"kind":      map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": admissionNamespace,
			"operation": "CREATE",
			"userInfo":  map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
			"object":    json.RawMessage(rawPod),
			"dryRun":    false,
		},
	}
	b, _ := json.Marshal(review)
	return b
}

// admissionFast is the load loop's check: status 200, allowed, a patch
// (byte searches, so the client's CPU goes to sending, not parsing; both
// injectors encode with encoding/json, which writes these exact bytes). The
// full check, admissionOK, runs on the first answer.
func admissionFast(status int, body []byte) error {
	if status != 200 || !bytes.Contains(body, []byte(`"allowed":true`)) || !bytes.Contains(body, []byte(`"patch":"`)) {
		return admissionOK(status, body)
	}
	return nil
}

// admissionOK accepts an allowed AdmissionReview response carrying a patch.
func admissionOK(status int, body []byte) error {
	if status != 200 {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	var r struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
			Result  *struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("response is not an AdmissionReview: %w", err)
	}
	if !r.Response.Allowed {
		msg := ""
		if r.Response.Result != nil {
			msg = r.Response.Result.Message
		}
		return fmt.Errorf("denied: %s", msg)
	}
	if len(r.Response.Patch) == 0 {
		return fmt.Errorf("allowed without a patch")
	}
	return nil
}

// injector is a running admission webhook server.
type injector struct {
	*proc
	addr string // 127.0.0.1:PORT
	path string // URL path of the mutating webhook
}

// startCredletInjector starts credlet-injector with a configuration letting
// the benchmark namespace name paths under admissionKVPrefix.
func startCredletInjector(bin, dir string, ca *testCA, vaultAddr string, extraEnv []string) (*injector, error) {
	certFile, keyFile, err := ca.writeLeaf(dir, 2)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("defaults:\n  vaultAddr: %s\n  agentImage: registry.example.test/credlet-agent:bench\nnamespaces:\n  %s:\n    allowedPaths: [%s]\n",
		vaultAddr, admissionNamespace, admissionKVPrefix)
	cfgPath := filepath.Join(dir, "injector.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	inj := &injector{addr: fmt.Sprintf("127.0.0.1:%d", port), path: credletMutatePath}
	p, err := startProc("credlet-injector", filepath.Join(dir, "credlet-injector.log"), append(cleanEnv(), extraEnv...), bin,
		"--listen", inj.addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--vault-addr", vaultAddr, "--config", cfgPath, "--agent-image", "registry.example.test/credlet-agent:bench",
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", mport))
	if err != nil {
		return nil, err
	}
	inj.proc = p
	return inj, nil
}

// credletMutatePath is where credlet-injector serves admission reviews.
const credletMutatePath = "/mutate"

// startVaultK8s starts `vault-k8s agent-inject`. It insists on an in-cluster
// identity (KUBERNETES_SERVICE_* and the service account files under
// /var/run/secrets/kubernetes.io/serviceaccount), so it runs in a private
// mount namespace (unshare -m) with a tmpfs on /run holding fake ones; the
// machine's own /run is untouched. The API server address is a closed
// port: the mutation path does not call it.
func startVaultK8s(bin, dir string, ca *testCA, vaultAddr string, extraEnv []string) (*injector, error) {
	certFile, keyFile, err := ca.writeLeaf(dir, 3)
	if err != nil {
		return nil, err
	}
	sa := filepath.Join(dir, "sa")
	if err := os.Mkdir(sa, 0o700); err != nil {
		return nil, err
	}
	for name, content := range map[string][]byte{
		"token": []byte("FAKE-service-account-token"), "ca.crt": ca.PEM, "namespace": []byte("vault-bench"),
	} {
		if err := os.WriteFile(filepath.Join(sa, name), content, 0o600); err != nil {
			return nil, err
		}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("vault-k8s needs unshare(1) for its fake in-cluster identity: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	closed, err := freePort()
	if err != nil {
		return nil, err
	}
	inj := &injector{addr: fmt.Sprintf("127.0.0.1:%d", port), path: "/mutate"}
	script := `set -e
mount -t tmpfs -o size=1m,mode=0755 tmpfs /run
d=/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$d"
cp "$1/token" "$1/ca.crt" "$1/namespace" "$d/"
shift
exec "$@"`
	env := append(append(cleanEnv(), extraEnv...), "KUBERNETES_SERVICE_HOST=127.0.0.1", fmt.Sprintf("KUBERNETES_SERVICE_PORT=%d", closed))
	p, err := startProc("vault-k8s agent-inject", filepath.Join(dir, "vault-k8s.log"), env, unshare,
		"-m", "--propagation", "private", "sh", "-c", script, "sh", sa, bin, "agent-inject",
		"-listen="+inj.addr, "-tls-cert-file="+certFile, "-tls-key-file="+keyFile, "-vault-address="+vaultAddr)
	if err != nil {
		return nil, err
	}
	inj.proc = p
	return inj, nil
}

// waitServing posts the review until the injector answers it correctly.
func (inj *injector) waitServing(ca *testCA, review []byte, timeout time.Duration) error {
	var last error
	ok := waitFor(timeout, 20*time.Millisecond, func() bool {
		if inj.exited() {
			return true
		}
		c := newConn(ca.tlsDialer(inj.addr))
		defer c.close()
		status, body, err := c.do(postRequest(inj.path, review))
		if err == nil {
			err = admissionOK(status, body)
		}
		last = err
		return err == nil
	})
	if inj.exited() {
		return fmt.Errorf("%s exited: %v: %s", inj.name, inj.err, inj.logTail(800))
	}
	if !ok {
		return fmt.Errorf("%s not serving after %s: %v: %s", inj.name, timeout, last, inj.logTail(800))
	}
	return nil
}

// admissionBench is one injector's row.
type admissionBench struct {
	load     loadResult
	distinct loadResult // every request a different pod
	// The same two runs with the injector on CPU 0 and the load generator
	// on CPU 1 (zero when the machine has no two CPUs to pin to).
	pinned, pinnedDistinct loadResult
	idle, after            memInfo
	binSize                int64
	patchBytes             int
}

// benchInjector measures inj on review with clients concurrent TLS
// keep-alive connections.
func benchInjector(ctx context.Context, inj *injector, binPath string, ca *testCA, review []byte, clients, total int) (admissionBench, error) {
	var res admissionBench
	if err := inj.waitServing(ca, review, 30*time.Second); err != nil {
		return res, err
	}
	res.binSize = fileSize(binPath)
	time.Sleep(500 * time.Millisecond)
	var err error
	if res.idle, err = readMem(inj.pid()); err != nil {
		return res, err
	}
	same := loadSpec{
		name: inj.name, clients: clients, warmup: 200, total: total, maxTime: 45 * time.Second,
		dial: ca.tlsDialer(inj.addr), request: postRequest(inj.path, review), check: admissionFast,
	}
	distinct := same
	distinct.name, distinct.request, distinct.vary = inj.name+" distinct", nil, distinctRequest(inj.path, review)
	res.load = runLoad(ctx, same)
	res.distinct = runLoad(ctx, distinct)
	if res.after, err = readMem(inj.pid()); err != nil {
		return res, err
	}
	pinErr := pinned(inj.pid(), func() {
		same.name, distinct.name = same.name+" pinned", distinct.name+" pinned"
		res.pinned = runLoad(ctx, same)
		res.pinnedDistinct = runLoad(ctx, distinct)
	})
	if pinErr != nil {
		return res, pinErr
	}
	c := newConn(ca.tlsDialer(inj.addr))
	defer c.close()
	if _, body, err := c.do(postRequest(inj.path, review)); err == nil {
		var r struct {
			Response struct {
				Patch []byte `json:"patch"`
			} `json:"response"`
		}
		if json.Unmarshal(body, &r) == nil {
			res.patchBytes = len(bytes.TrimSpace(r.Response.Patch))
		}
	}
	return res, nil
}
