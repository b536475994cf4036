package mutate

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/credlet/credlet/internal/annotation"
)

// agentContainer builds the agent; once makes classic mode's init container.
func (p *Plan) agentContainer(name string, once bool) corev1.Container {
	limit := p.Memory.DeepCopy()
	limit.Add(p.Memory)
	c := corev1.Container{
		Name:            name,
		Image:           p.Policy.AgentImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            p.Args(once),
		Env: []corev1.EnvVar{
			// the Go runtime keeps its heap under the limit instead of being killed
			{Name: "GOMEMLIMIT", Value: fmt.Sprintf("%dMiB", limit.Value()*8/10>>20)},
		},
		Ports: []corev1.ContainerPort{{Name: AgentPortName, ContainerPort: AgentPort, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: p.CPU.DeepCopy(), corev1.ResourceMemory: p.Memory.DeepCopy()},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: limit},
		},
		VolumeMounts:             p.agentMounts(once),
		SecurityContext:          p.securityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if once {
		c.Ports = nil
		return c
	}
	c.LivenessProbe = probe("/healthz", 10, 3)
	if p.Sidecar == annotation.SidecarNative {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		// app containers start only once every required credential is committed
		c.StartupProbe = probe("/readyz", 1, 300)
	}
	return c
}

func probe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(AgentPort), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 1, SuccessThreshold: 1,
	}
}

func (p *Plan) securityContext() *corev1.SecurityContext {
	caps := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	if p.Policy.AllowIPCLock {
		caps.Add = []corev1.Capability{"IPC_LOCK"}
	}
	return &corev1.SecurityContext{
		RunAsUser:                ptr.To(p.UID),
		RunAsGroup:               p.GID,
		RunAsNonRoot:             ptr.To(true),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             caps,
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func (p *Plan) agentMounts(once bool) []corev1.VolumeMount {
	var m []corev1.VolumeMount
	d := p.Spec.Delivery
	if d.Files {
		m = append(m, corev1.VolumeMount{Name: VolumeSecrets, MountPath: SecretsDir})
	}
	if d.Socket && !once {
		m = append(m, corev1.VolumeMount{Name: VolumeRun, MountPath: RunDir})
	}
	switch p.Spec.Auth {
	case annotation.AuthKubernetes, annotation.AuthJWT:
		m = append(m, corev1.VolumeMount{Name: VolumeToken, MountPath: TokenDir, ReadOnly: true})
	case annotation.AuthAppRole:
		m = append(m, corev1.VolumeMount{Name: VolumeAppRole, MountPath: AppRoleDir, ReadOnly: true})
	}
	if p.Policy.VaultCA != nil {
		m = append(m, corev1.VolumeMount{Name: VolumeVaultCA, MountPath: VaultCADir, ReadOnly: true})
	}
	return m
}

// volumes are the pod volumes the plan needs.
func (p *Plan) volumes() []corev1.Volume {
	var v []corev1.Volume
	d := p.Spec.Delivery
	if d.Files {
		v = append(v, corev1.Volume{Name: VolumeSecrets, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(p.Policy.SecretsSizeLimit.DeepCopy()),
		}}})
	}
	if d.Socket {
		v = append(v, corev1.Volume{Name: VolumeRun, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("1Mi")),
		}}})
	}
	readOnly := ptr.To(int32(0o444)) // mounted into the agent only, which runs as the app's user
	switch p.Spec.Auth {
	case annotation.AuthKubernetes, annotation.AuthJWT:
		v = append(v, corev1.Volume{Name: VolumeToken, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: ptr.To(TokenExpirationSeconds), Path: path.Base(TokenPath),
			}}},
		}}})
	case annotation.AuthAppRole:
		v = append(v, corev1.Volume{Name: VolumeAppRole, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  p.Spec.AppRoleSecret,
			Items:       []corev1.KeyToPath{{Key: "role_id", Path: "role_id"}, {Key: "secret_id", Path: "secret_id"}},
			DefaultMode: readOnly,
		}}})
	}
	if ca := p.Policy.VaultCA; ca != nil {
		items := []corev1.KeyToPath{{Key: ca.Key, Path: path.Base(VaultCAPem)}}
		src := corev1.VolumeSource{}
		if ca.ConfigMap != "" {
			src.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: ca.ConfigMap}, Items: items, DefaultMode: readOnly}
		} else {
			src.Secret = &corev1.SecretVolumeSource{SecretName: ca.Secret, Items: items, DefaultMode: readOnly}
		}
		v = append(v, corev1.Volume{Name: VolumeVaultCA, VolumeSource: src})
	}
	return v
}

// appMounts and appEnv are what each target container gets.
func (p *Plan) appMounts() []corev1.VolumeMount {
	var m []corev1.VolumeMount
	if p.Spec.Delivery.Files {
		m = append(m, corev1.VolumeMount{Name: VolumeSecrets, MountPath: SecretsDir, ReadOnly: true})
	}
	if p.Spec.Delivery.Socket {
		m = append(m, corev1.VolumeMount{Name: VolumeRun, MountPath: RunDir, ReadOnly: true})
	}
	return m
}

func (p *Plan) appEnv() []corev1.EnvVar {
	var e []corev1.EnvVar
	if p.Spec.Delivery.Socket {
		e = append(e, corev1.EnvVar{Name: EnvSocket, Value: SocketPath})
	}
	if p.Spec.Delivery.Files {
		e = append(e, corev1.EnvVar{Name: EnvSecretsDir, Value: SecretsDir})
	}
	return e
}

// checkTargets refuses app containers whose mounts or env would clash.
func (p *Plan) checkTargets(pod *corev1.Pod) error {
	for _, t := range p.Targets {
		c := p.container(pod, t)
		for _, want := range p.appMounts() {
			for _, have := range c.VolumeMounts {
				if overlaps(have.MountPath, want.MountPath) {
					return deny("container %q already mounts %q, which overlaps %s where credlet mounts its %s", c.Name, have.MountPath, want.MountPath, want.Name)
				}
			}
		}
		for _, want := range p.appEnv() {
			for _, have := range c.Env {
				if have.Name == want.Name && (have.Value != want.Value || have.ValueFrom != nil) {
					return deny("container %q sets env %s, which credlet sets to %q", c.Name, have.Name, want.Value)
				}
			}
		}
	}
	return nil
}

func overlaps(a, b string) bool {
	a, b = path.Clean(a)+"/", path.Clean(b)+"/"
	return strings.HasPrefix(a, b) || strings.HasPrefix(b, a)
}
