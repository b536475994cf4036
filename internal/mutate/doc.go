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
// Handler answers admission requests with a JSON patch written from the
// same computed changes that Apply makes to a typed pod (edits): only "add"
// operations, at indices taken from the pod as decoded, so nothing of the
// pod but what the mutation reads is re-encoded and no diff is computed.
// A diff of the original and mutated pods (gomodules.xyz/jsonpatch, what
// controller-runtime's PatchResponseFromRaw calls) decoded both pods into
// generic maps and cost twice the CPU of the rest of an admission; it is
// kept in the tests as the reference every patch is compared with
// (TestPatchMatchesReference). controller-runtime itself is not linked: its
// admission package pulls in all of client-go, which doubled the
// injector's memory.
package mutate
