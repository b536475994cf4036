package mutate

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/credlet/credlet/internal/annotation"
)

// edits is everything a Plan changes in one pod, computed once. It is the
// single source of both outputs: apply changes a typed pod (Apply, Mutate),
// patch writes the same changes as JSON-patch operations on the raw pod
// (Handler). Each change is an addition: an element inserted or appended,
// a member added.
type edits struct {
	// initFront is inserted first in spec.initContainers: the native agent,
	// or classic mode's --once init container.
	initFront *corev1.Container
	// appended goes last in spec.containers: classic mode's sidecar.
	appended *corev1.Container
	// volumes are appended to spec.volumes.
	volumes []corev1.Volume
	// serviceAccount, when not empty, is set as spec.serviceAccountName.
	serviceAccount string
	// targets are the app containers that get mounts and env, one entry per
	// container, in the order of Plan.Targets.
	targets []targetEdit
}

// targetEdit is what one app container gets appended.
type targetEdit struct {
	init   bool // in spec.initContainers
	index  int  // in the pod's list before the agent is inserted
	mounts []corev1.VolumeMount
	env    []corev1.EnvVar // the plan's env the container does not set already
}

// edits computes the plan's changes to pod; pod is not changed. NewPlan and
// checkTargets have checked that nothing clashes.
func (p *Plan) edits(pod *corev1.Pod) *edits {
	e := &edits{volumes: p.volumes()}
	switch p.Sidecar {
	case annotation.SidecarClassic:
		if p.Spec.Delivery.Files {
			// The init container fills the files before the app starts.
			// With the socket alone there is nothing to fill: the app's
			// client waits on the sidecar's not_ready answer instead.
			c := p.agentContainer(AgentInitName, true)
			e.initFront = &c
		}
		c := p.agentContainer(AgentName, false)
		e.appended = &c
	default:
		c := p.agentContainer(AgentName, false)
		e.initFront = &c
	}
	if p.Spec.Auth != annotation.AuthAppRole && pod.Spec.ServiceAccountName == "" {
		// A projected token needs a named ServiceAccount. The ServiceAccount
		// admission plugin names "default" before webhooks run; where it is
		// off, the injector does the same.
		e.serviceAccount = "default"
	}
	mounts, env := p.appMounts(), p.appEnv()
	for _, t := range p.Targets {
		list := pod.Spec.Containers
		if t.Init {
			list = pod.Spec.InitContainers
		}
		i := slices.IndexFunc(list, func(c corev1.Container) bool { return c.Name == t.Name })
		if i < 0 {
			continue // NewPlan found every target
		}
		// A name listed twice (or two containers sharing it, which the
		// apiserver refuses later) edits the first such container, once
		// per mention, as a loop over the targets would.
		k := slices.IndexFunc(e.targets, func(te targetEdit) bool { return te.init == t.Init && te.index == i })
		if k < 0 {
			e.targets = append(e.targets, targetEdit{init: t.Init, index: i})
			k = len(e.targets) - 1
		}
		te := &e.targets[k]
		te.mounts = append(te.mounts, mounts...)
		for _, v := range env {
			has := func(have corev1.EnvVar) bool { return have.Name == v.Name }
			if !slices.ContainsFunc(list[i].Env, has) && !slices.ContainsFunc(te.env, has) {
				te.env = append(te.env, v)
			}
		}
	}
	return e
}

// apply makes the changes to pod in place.
func (e *edits) apply(pod *corev1.Pod) {
	for _, t := range e.targets { // before the insertion shifts init indices
		c := &pod.Spec.Containers
		if t.init {
			c = &pod.Spec.InitContainers
		}
		target := &(*c)[t.index]
		target.VolumeMounts = append(target.VolumeMounts, t.mounts...)
		target.Env = append(target.Env, t.env...)
	}
	if e.initFront != nil {
		pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, *e.initFront)
	}
	if e.appended != nil {
		pod.Spec.Containers = append(pod.Spec.Containers, *e.appended)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, e.volumes...)
	if e.serviceAccount != "" {
		pod.Spec.ServiceAccountName = e.serviceAccount
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[annotation.KeyStatus] = annotation.StatusInjected
}
