package mutate

import (
	"strconv"

	"github.com/credlet/credlet/internal/annotation"
)

// Args renders the agent's command line from the plan. Flags are spelled
// --name=value so an empty value (which disables the socket or the files)
// stays one argument. once adds --once for classic mode's init container,
// which fills the files and exits; the plan must deliver files.
func (p *Plan) Args(once bool) []string {
	s := p.Spec
	args := []string{"run", "--vault-addr=" + p.VaultAddr}
	if p.Policy.VaultCA != nil {
		args = append(args, "--vault-ca-cert="+VaultCAPem)
	}
	args = append(args, "--auth="+string(s.Auth))
	if p.AuthMount != "" {
		args = append(args, "--auth-mount="+p.AuthMount)
	}
	switch s.Auth {
	case annotation.AuthKubernetes, annotation.AuthJWT:
		args = append(args, "--role="+s.Role, "--token-file="+TokenPath)
	case annotation.AuthAppRole:
		args = append(args, "--role-id-file="+AppRoleDir+"/role_id", "--secret-id-file="+AppRoleDir+"/secret_id")
	}
	for _, c := range s.Credentials {
		args = append(args, "--credential="+c.String())
	}
	if s.Refresh > 0 {
		args = append(args, "--refresh="+s.Refresh.String())
	}
	uid := strconv.FormatInt(p.UID, 10)
	if s.Delivery.Files {
		args = append(args, "--secrets-dir="+SecretsDir, "--file-uid="+uid)
		if p.GID != nil {
			args = append(args, "--file-gid="+strconv.FormatInt(*p.GID, 10))
		}
	} else {
		args = append(args, "--secrets-dir=")
	}
	if s.Delivery.Socket && !once {
		args = append(args, "--socket="+SocketPath, "--allow-uid="+uid)
	} else {
		args = append(args, "--socket=")
	}
	if s.VerifyURL != "" {
		args = append(args, "--verify-url="+s.VerifyURL)
	}
	if s.Notify != "" && !once {
		args = append(args, "--notify="+s.Notify)
	}
	args = append(args, "--listen=:"+strconv.Itoa(AgentPort))
	if s.LogLevel != "" {
		args = append(args, "--log-level="+s.LogLevel)
	}
	if once {
		args = append(args, "--once")
	}
	return args
}
