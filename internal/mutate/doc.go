// Package mutate owns what the injector does to a pod: it resolves a pod's
// annotations (package annotation) against its namespace's policy (package
// injectorconfig) into a Plan, denies what cannot work or is not allowed,
// and applies the Plan to a deep copy of the pod:
//
//   - the agent as a native sidecar (first init container, restartPolicy
//     Always, startup probe on /readyz) or, in classic mode, an --once init
//     container plus a regular sidecar;
//   - a memory-medium emptyDir with a size limit for the files, an emptyDir
//     for the socket, a projected ServiceAccount token (kubernetes and jwt
//     auth; audience vault, 600 s) or the AppRole Secret, and the Vault CA,
//     mounted into the agent;
//   - read-only mounts and CREDLET_SOCKET / CREDLET_SECRETS_DIR in the chosen
//     app containers;
//   - credlet.io/status: injected, so a pod is never injected twice.
//
// Handler answers admission requests with a JSON patch that a diff library
// (gomodules.xyz/jsonpatch, what controller-runtime's PatchResponseFromRaw
// calls) computes from the original and mutated pods; no patch path is ever
// written by hand. controller-runtime itself is not linked: its admission
// package pulls in all of client-go, which doubled the injector's memory.
package mutate
