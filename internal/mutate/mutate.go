package mutate

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorconfig"
)

// Mutate returns a mutated deep copy of pod, or nil when there is nothing to
// do: the pod lacks the inject label, or it is already injected (a
// reinvocation, or a pod re-created from an injected one). The error wraps
// ErrDenied or annotation.ErrInvalid when the pod must be refused.
func Mutate(pod *corev1.Pod, namespace string, cfg *injectorconfig.Config) (*corev1.Pod, error) {
	if pod.Labels[annotation.InjectLabel] != "true" {
		return nil, nil
	}
	if status, ok := pod.Annotations[annotation.KeyStatus]; ok {
		if status == annotation.StatusInjected && hasAgent(pod) {
			return nil, nil
		}
		return nil, deny("annotation %s=%q is written by the injector, but this pod has no %s container: remove the annotation", annotation.KeyStatus, status, AgentName)
	}
	plan, err := NewPlan(pod, namespace, cfg)
	if err != nil {
		return nil, err
	}
	if err := plan.checkTargets(pod); err != nil {
		return nil, err
	}
	out := pod.DeepCopy()
	plan.Apply(out)
	return out, nil
}

// Apply adds the agent, volumes, mounts, env and the status annotation to
// pod in place. NewPlan has checked that nothing clashes.
func (p *Plan) Apply(pod *corev1.Pod) {
	switch p.Sidecar {
	case annotation.SidecarClassic:
		if p.Spec.Delivery.Files {
			// The init container fills the files before the app starts.
			// With the socket alone there is nothing to fill: the app's
			// client waits on the sidecar's not_ready answer instead.
			pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, p.agentContainer(AgentInitName, true))
		}
		pod.Spec.Containers = append(pod.Spec.Containers, p.agentContainer(AgentName, false))
	default:
		pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, p.agentContainer(AgentName, false))
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, p.volumes()...)
	if p.Spec.Auth != annotation.AuthAppRole && pod.Spec.ServiceAccountName == "" {
		// A projected token needs a named ServiceAccount. The ServiceAccount
		// admission plugin names "default" before webhooks run; where it is
		// off, the injector does the same.
		pod.Spec.ServiceAccountName = "default"
	}
	for _, t := range p.Targets {
		c := p.container(pod, t)
		c.VolumeMounts = append(c.VolumeMounts, p.appMounts()...)
		for _, e := range p.appEnv() {
			if !slices.ContainsFunc(c.Env, func(have corev1.EnvVar) bool { return have.Name == e.Name }) {
				c.Env = append(c.Env, e)
			}
		}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[annotation.KeyStatus] = annotation.StatusInjected
}

func hasAgent(pod *corev1.Pod) bool {
	for _, c := range allContainers(pod) {
		if c.Name == AgentName {
			return true
		}
	}
	return false
}
