#!/usr/bin/env bash
# Offline check of the Kubernetes manifests, run by `make k8s-validate`.
#
# Renders deploy/kubernetes with `kubectl kustomize`, validates every object
# with kubernetes-validate (strict: unknown fields are errors) against the
# oldest Kubernetes these manifests are for and the newest whose schemas it
# ships, after making sure that the validator rejects a broken copy. Then
# checks what the schemas cannot: the user matches the image's, the probes
# run the health check, the selectors reach the pods, the grace outlasts the
# server's, and the hardening is all there.
#
# Needs kubectl and kubernetes-validate (PyPI), looked for in
# target/k8s-tools/ (where .ci/run installs them) and then on PATH. Without
# them it prints SKIPPED, and fails when COLORSORT_REQUIRE_TOOLS is set.
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS=target/k8s-tools/bin
# preStop's sleep action is from 1.30.
OLDEST=1.30.0

skip() {
    if [ -n "${COLORSORT_REQUIRE_TOOLS:-}" ]; then
        echo "kubernetes validation cannot run: $1 (COLORSORT_REQUIRE_TOOLS is set)" >&2
        exit 1
    fi
    echo "SKIPPED: kubernetes validation ($1)"
    exit 0
}

KUBECTL=""
for k in "$TOOLS/kubectl" "$(command -v kubectl || true)"; do
    if [ -n "$k" ] && [ -x "$k" ]; then KUBECTL=$k && break; fi
done
PY=""
for p in "$TOOLS/python3" "$(command -v python3 || true)"; do
    if [ -n "$p" ] && "$p" -c 'import kubernetes_validate, yaml' 2>/dev/null; then PY=$p && break; fi
done
[ -n "$KUBECTL" ] || skip "kubectl is not installed"
[ -n "$PY" ] || skip "kubernetes-validate is not installed (pip install kubernetes-validate)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colorsort-k8s.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RENDERED=$WORK/rendered.yaml

echo "==> kubectl kustomize deploy/kubernetes ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"
"$KUBECTL" kustomize deploy/kubernetes >"$RENDERED"
grep -c '^kind:' "$RENDERED" | sed 's/^/    objects: /'

NEWEST=$("$PY" -c 'from kubernetes_validate import utils; print(utils.latest_version())')
validate() { "$PY" -m kubernetes_validate --strict --quiet -k "$1" "$2"; }

# The validator must catch what it is here for: an unknown field and a
# wrong type, each in a copy of the rendered objects.
sed 's/^\( *\)readOnlyRootFilesystem: true/\1readOnlyRootFilesytem: true/' "$RENDERED" >"$WORK/typo.yaml"
sed 's/^\( *\)replicas: 3$/\1replicas: three/' "$RENDERED" >"$WORK/type.yaml"
for broken in typo type; do
    cmp -s "$RENDERED" "$WORK/$broken.yaml" && { echo "FAIL: could not make the $broken copy" >&2; exit 1; }
    if validate "$NEWEST" "$WORK/$broken.yaml" >"$WORK/$broken.out" 2>&1; then
        echo "FAIL: kubernetes-validate accepts a manifest with a $broken error" >&2
        exit 1
    fi
done
echo "==> kubernetes-validate $("$PY" -m kubernetes_validate --version) rejects a misspelt field and a wrong type"

for version in "$OLDEST" "$NEWEST"; do
    if ! validate "$version" "$RENDERED" >"$WORK/out" 2>&1; then
        cat "$WORK/out" >&2
        echo "FAIL: the manifests do not validate against Kubernetes $version" >&2
        exit 1
    fi
    echo "==> every object validates against Kubernetes $version (strict)"
done

# What the schemas do not say. The image's user and the server's shutdown
# grace are read from the Dockerfile and src/config/constants.rs.
read -r uid gid < <(sed -n 's/^USER \([0-9]*\):\([0-9]*\)$/\1 \2/p' Dockerfile) || true
grace=$(sed -n 's/^pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(\([0-9]*\));$/\1/p' src/config/constants.rs)
[ -n "${gid:-}" ] || { echo "FAIL: no USER uid:gid line in the Dockerfile" >&2; exit 1; }
[ -n "$grace" ] || { echo "FAIL: DEFAULT_SHUTDOWN_GRACE not found in src/config/constants.rs" >&2; exit 1; }
"$PY" - "$RENDERED" "$uid" "$gid" "$grace" <<'EOF'
import sys, yaml

path, uid, gid, grace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
objs = {d["kind"]: d for d in yaml.safe_load_all(open(path)) if d}
problems = []
def need(ok, what):
    if not ok:
        problems.append(what)

for kind in ("Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget"):
    need(kind in objs, f"no {kind}")
if problems:
    sys.exit("FAIL: " + "; ".join(problems))
dep, svc, pvc, pdb = (objs[k] for k in ("Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget"))
spec = dep["spec"]
pod = spec["template"]["spec"]
labels = spec["template"]["metadata"]["labels"]
(c,) = pod["containers"]
need(spec["replicas"] == 3, "replicas is not 3")
need(spec["strategy"]["rollingUpdate"].get("maxUnavailable") == 0, "a rolling update may take a pod away before its successor is ready")
def selects(selector):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
need(selects(spec["selector"]["matchLabels"]), "the Deployment's selector misses its pods")
need(selects(svc["spec"]["selector"]), "the Service's selector misses the pods")
need(selects(pdb["spec"]["selector"]["matchLabels"]), "the PodDisruptionBudget's selector misses the pods")
need("ReadWriteMany" in pvc["spec"]["accessModes"], "the volume is not ReadWriteMany")
claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
need(claims == [pvc["metadata"]["name"]], "the pods do not mount the claim")
need(any(m["mountPath"] == "/data" for m in c["volumeMounts"]), "nothing mounted on /data")
psc, csc = pod["securityContext"], c["securityContext"]
need(psc.get("runAsNonRoot") is True, "runAsNonRoot is not set")
need((psc.get("runAsUser"), psc.get("runAsGroup")) == (uid, gid), f"the pod's user is not the image's {uid}:{gid}")
need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "no RuntimeDefault seccomp profile")
need(csc.get("readOnlyRootFilesystem") is True, "the root filesystem is writable")
need(csc.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed")
need(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped")
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    need(c.get(probe, {}).get("exec", {}).get("command") == ["/colorsort", "ping"], f"{probe} does not run /colorsort ping")
need("memory" in c.get("resources", {}).get("limits", {}), "no memory limit")
port = {p["name"]: p["containerPort"] for p in c["ports"]}
need(port.get(svc["spec"]["ports"][0]["targetPort"]) == 6666, "the Service's target port is not the container's 6666")
pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
need(pod["terminationGracePeriodSeconds"] > pause + grace,
     f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} does not outlast the pre-stop pause ({pause} s) and the server's grace ({grace} s)")
need(pod.get("enableServiceLinks") is False, "service links would put COLORSORT_* variables in the environment")
if problems:
    sys.exit("FAIL: " + "; ".join(problems))
print(f"==> user {uid}:{gid} as in the Dockerfile, exec probes, selectors, RWX claim, hardening, "
      f"grace {pod['terminationGracePeriodSeconds']} s > {pause} s pause + {grace} s server grace")
EOF
echo "kubernetes validation passed"
