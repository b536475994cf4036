package socketapi

import (
	"net"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/credlet/credlet/internal/audit"
)

// peer is who is on the other end of a connection, from SO_PEERCRED.
type peer struct {
	audit.Peer
	known   bool // SO_PEERCRED was read
	allowed bool
}

// peerOf reads the connection's peer credentials and decides, once per
// connection, whether it may read.
func (s *Server) peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return peer{}
	}
	p := peer{Peer: audit.Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, known: true}
	p.allowed = slices.Contains(s.allowUIDs, p.UID) || slices.Contains(s.allowGIDs, p.GID)
	return p
}
