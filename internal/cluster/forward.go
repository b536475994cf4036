package cluster

import (
	"errors"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
)

// VaultPodPort is the port of Vault on the node address, as pods reach it
// (manifests/overlays/test's injector config names it). The run's network
// namespace is its own, so a fixed port is free.
const VaultPodPort = 8200

// forwardVault makes Vault reachable from pods: it listens on the node
// address (the CNI bridge's gateway) and forwards each connection to Vault
// on 127.0.0.1.
func (c *Cluster) forwardVault() error {
	ln, err := net.Listen("tcp", net.JoinHostPort(NodeIP, strconv.Itoa(VaultPodPort)))
	if err != nil {
		return err
	}
	c.vaultFwd = ln
	c.VaultPodAddr = "http://" + net.JoinHostPort(NodeIP, strconv.Itoa(VaultPodPort))
	go serveForward(ln, c.Vault.HostPort())
	return nil
}

// serveForward forwards each connection accepted on ln to target until ln
// is closed.
func serveForward(ln net.Listener, target string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer in.Close()
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); closeWrite(out); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// ServeOnHost forwards connections accepted on apiLn to the apiserver and
// on vaultLn to Vault (listeners from HostListeners, on this machine's
// loopback), and writes a kubeconfig for the forwarded apiserver address
// into the cluster's folder. It returns that kubeconfig's path and Vault's
// forwarded address.
func (c *Cluster) ServeOnHost(apiLn, vaultLn net.Listener) (kubeconfig, vaultAddr string, err error) {
	u, err := url.Parse(c.Kube.Config.Host)
	if err != nil {
		return "", "", err
	}
	go serveForward(apiLn, u.Host)
	go serveForward(vaultLn, c.Vault.HostPort())
	cfg := rest.CopyConfig(c.Kube.Config)
	cfg.Host = "https://" + apiLn.Addr().String()
	kubeconfig = filepath.Join(c.Dir, "kubeconfig-host")
	if err := WriteKubeconfig(kubeconfig, cfg); err != nil {
		return "", "", err
	}
	return kubeconfig, "http://" + vaultLn.Addr().String(), nil
}
