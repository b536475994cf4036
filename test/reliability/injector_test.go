package reliability

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// The namespace of the suite's pods and the prefix the injector's
// configuration lets it name.
const (
	podNamespace = "partner-rel"
	kvPrefix     = "secret/partners/rel"
)

// testCA issues the injector's serving certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reliability CA (fake)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf returns PEM cert and key for 127.0.0.1 with the given serial.
func (ca *testCA) leaf(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// secretVolume lays out certificate files the way kubelet mounts a Secret:
// tls.crt -> ..data/tls.crt, ..data -> ..<version>/, and publishes a new
// version with one rename of ..data (what cert-manager rotation looks like
// from inside the pod).
type secretVolume struct {
	dir string
	seq int
}

func (v *secretVolume) publish(t *testing.T, cert, key []byte) {
	t.Helper()
	v.seq++
	ver := fmt.Sprintf("..v%d", v.seq)
	if err := os.Mkdir(filepath.Join(v.dir, ver), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(v.dir, ver, "tls.crt"), string(cert))
	writeFile(t, filepath.Join(v.dir, ver, "tls.key"), string(key))
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ver, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		link := filepath.Join(v.dir, f)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", f), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.seq > 1 {
		_ = os.RemoveAll(filepath.Join(v.dir, fmt.Sprintf("..v%d", v.seq-1)))
	}
}

// injectorProc is a running credlet-injector.
type injectorProc struct {
	t       *testing.T
	addr    string
	ca      *testCA
	certs   *secretVolume
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startInjector starts credlet-injector serving a certificate with serial 2
// from a Secret-style volume.
func startInjector(t *testing.T) *injectorProc {
	t.Helper()
	bin := needInjector(t)
	dir := t.TempDir()
	ca := newCA(t)
	certs := &secretVolume{dir: filepath.Join(dir, "tls")}
	if err := os.Mkdir(certs.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c, k := ca.leaf(t, 2)
	certs.publish(t, c, k)
	cfg := fmt.Sprintf("defaults:\n  vaultAddr: %s\n  agentImage: registry.example.test/credlet-agent:rel\nnamespaces:\n  %s:\n    allowedPaths: [%s]\n",
		vault.Addr, podNamespace, kvPrefix)
	writeFile(t, filepath.Join(dir, "config.yaml"), cfg)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mport, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &injectorProc{t: t, addr: fmt.Sprintf("127.0.0.1:%d", port), ca: ca, certs: certs,
		logPath: filepath.Join(dir, "injector.log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", p.addr,
		"--tls-cert-file", filepath.Join(certs.dir, "tls.crt"), "--tls-key-file", filepath.Join(certs.dir, "tls.key"),
		"--config", filepath.Join(dir, "config.yaml"), "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", mport),
		"--cert-poll", "2s")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			t.Error("credlet-injector did not stop within 30 s of SIGTERM")
		}
		p.checkLog()
	})
	if !eventually(30*time.Second, func() bool {
		if p.exited() {
			return true
		}
		_, err := p.admit(goodReview("ready"))
		return err == nil
	}) || p.exited() {
		t.Fatalf("credlet-injector not serving\n%s", p.logTail())
	}
	return p
}

func (p *injectorProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *injectorProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func (p *injectorProc) checkLog() {
	b, _ := os.ReadFile(p.logPath)
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:", "FAKE-"} {
		if i := bytes.Index(b, []byte(bad)); i >= 0 {
			p.t.Errorf("injector log has %q:\n%s", bad, b[i:min(len(b), i+2000)])
		}
	}
}

func (p *injectorProc) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: p.ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// admit POSTs one review on a new connection and returns the response.
func (p *injectorProc) admit(review []byte) (admissionResult, error) {
	c, err := tls.Dial("tcp", p.addr, p.tlsConfig())
	if err != nil {
		return admissionResult{}, err
	}
	defer c.Close()
	return post(c, bufio.NewReader(c), "application/json", review)
}

// admissionResult is an injector's answer.
type admissionResult struct {
	status  int
	body    []byte
	allowed bool
	patch   []byte
	uid     string
	message string
	code    int
}

func post(c net.Conn, br *bufio.Reader, contentType string, body []byte) (admissionResult, error) {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := fmt.Sprintf("POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", contentType, len(body))
	if _, err := io.WriteString(c, req); err != nil {
		return admissionResult{}, err
	}
	if _, err := c.Write(body); err != nil {
		return admissionResult{}, err
	}
	return readAdmission(br)
}

func readAdmission(br *bufio.Reader) (admissionResult, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return admissionResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return admissionResult{}, err
	}
	r := admissionResult{status: resp.StatusCode, body: b}
	if resp.StatusCode != 200 {
		return r, nil
	}
	var doc struct {
		Response *struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
			Status  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Response == nil {
		return r, fmt.Errorf("200 but not an AdmissionReview response: %.300s", b)
	}
	r.allowed, r.patch, r.uid = doc.Response.Allowed, doc.Response.Patch, doc.Response.UID
	if doc.Response.Status != nil {
		r.message, r.code = doc.Response.Status.Message, doc.Response.Status.Code
	}
	return r, nil
}

// pod is the suite's Pod: an app container running as 1000, labelled for
// credlet, with the given annotations (nil: a valid credential set).
func pod(annotations map[string]string) map[string]any {
	if annotations == nil {
		annotations = map[string]string{
			"credlet.io/role":               "bot",
			"credlet.io/credential.zerodha": kvPrefix + "/zerodha",
		}
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "bot-0", "namespace": podNamespace,
			"labels": map[string]string{"credlet.io/inject": "true"}, "annotations": annotations},
		"spec": map[string]any{
			"securityContext": map[string]any{"runAsUser": 1000, "runAsGroup": 1000},
			"containers":      []any{map[string]any{"name": "bot", "image": "registry.example.test/bot:1.0"}},
		},
	}
}

// reviewOf wraps an object in an AdmissionReview for CREATE of a Pod.
func reviewOf(uid string, object any) []byte {
	raw, _ := json.Marshal(object)
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": uid, "kind": map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": podNamespace, "operation": "CREATE",
			"userInfo": map[string]any{"username": "reliability"}, "object": json.RawMessage(raw),
		},
	})
	return b
}

func goodReview(uid string) []byte { return reviewOf(uid, pod(nil)) }

// requireInjected checks an answer allows the pod with a patch and echoes uid.
func requireInjected(r admissionResult, uid string) error {
	switch {
	case r.status != 200:
		return fmt.Errorf("status %d: %.300s", r.status, r.body)
	case !r.allowed || len(r.patch) == 0:
		return fmt.Errorf("not injected (allowed=%t, %d patch bytes): %s", r.allowed, len(r.patch), r.message)
	case r.uid != uid:
		return fmt.Errorf("uid %q echoed, want %q", r.uid, uid)
	}
	return nil
}
