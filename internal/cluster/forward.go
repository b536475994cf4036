package cluster

import (
	"errors"
	"io"
	"net"
	"strconv"
	"time"
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
