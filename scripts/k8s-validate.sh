#!/usr/bin/env bash
# Validate the Kubernetes manifests in deploy/k8s/ without a cluster.
#
#   1. kubernetes-validate (PyPI, pinned below) in strict mode, against each version in
#      K8S_VALIDATE_VERSIONS: every resource must match that version's schema, with no unknown
#      field (a misspelt key fails instead of being ignored by the API server)
#   2. what a schema cannot see: the kustomization lists exactly the manifests; selectors match
#      their pods; a StatefulSet's serviceName is a headless Service; named ports exist; every
#      pod runs as non-root with seccomp RuntimeDefault, and every container has a read-only root
#      filesystem, no privilege escalation, all capabilities dropped, requests and a memory limit
#   3. the TLS component (deploy/k8s/tls): its strategic-merge patches applied to the manifests
#      here (by a small merge of this script's own: maps merged, lists of named items merged by
#      name, other lists replaced, as kustomize does for these fields), and the result validated
#      as in 1; then every TLS file the containers are given is in the Secret volume mounted
#      there, the nodes call the seed over https://, and every HTTP probe asks over HTTPS
#
# kubernetes-validate is installed, if missing, into a virtualenv under target/ (reused by the
# next runs; needs python3 with venv and access to PyPI the first time).
# Ends with "k8s-validate: P passed, F failed"; exit status 0 only when F is 0, 2 when the
# validator cannot be installed.
#
# Environment (all optional):
#   K8S_VALIDATE_VERSIONS  Kubernetes versions to validate against   (default "1.37.0 1.33.0")
#   K8S_VALIDATE_VENV      virtualenv to use or create   (default target/k8s-validate-venv)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

PIN="kubernetes-validate==1.37.0"
VERSIONS="${K8S_VALIDATE_VERSIONS:-1.37.0 1.33.0}"
VENV="${K8S_VALIDATE_VENV:-$ROOT/target/k8s-validate-venv}"
DIR=deploy/k8s
PASSED=0
FAILED=0

say() { echo "k8s-validate: $*"; }
die() { echo "k8s-validate: error: $*" >&2; echo "k8s-validate: 0 passed, 1 failed"; exit 2; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }

command -v python3 >/dev/null || die "python3 is not installed: install python3 and python3-venv (scripts/setup.sh)"

# ---------------------------------------------------------------- the validator
installed_version() { "$VENV/bin/python" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(installed_version)" != "${PIN#*==}" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating a virtualenv in $VENV"
        python3 -m venv "$VENV" >"${TMPDIR:-/tmp}/k8s-validate-venv.log" 2>&1 \
            || die "python3 -m venv $VENV failed: $(tail -3 "${TMPDIR:-/tmp}/k8s-validate-venv.log" | tr '\n' ' ')
  Debian/Ubuntu need the venv module: install python3-venv (scripts/setup.sh)"
    fi
    say "installing $PIN into $VENV (from PyPI)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$PIN" \
        || die "pip install $PIN failed; it needs PyPI (or a mirror in PIP_INDEX_URL), or install it yourself:
  $VENV/bin/python -m pip install '$PIN'"
fi
KV="$VENV/bin/kubernetes-validate"
[ -x "$KV" ] || die "$KV is missing after installing $PIN"

mapfile -t MANIFESTS < <(find "$DIR" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
[ "${#MANIFESTS[@]}" -gt 0 ] || die "no manifests in $DIR"

# ---------------------------------------------------------------- 1: the schemas
# schemas WHAT FILE...: every resource in the files against each version's schema, strictly.
schemas() {
    local what=$1 v out
    shift
    for v in $VERSIONS; do
        if out="$("$KV" --strict --kubernetes-version "$v" "$@" 2>&1)" \
            && ! grep -qE '^(ERROR|WARN)' <<<"$out"; then
            pass "$what against the schemas of Kubernetes $v (strict): $(grep -c '^INFO .* passed' <<<"$out") resources in $# files"
        else
            fail "$what against the schemas of Kubernetes $v (strict):"
            grep -vE '^INFO' <<<"$out" | sed 's/^/      /'
        fi
    done
}
schemas "$DIR" "${MANIFESTS[@]}"

# ---------------------------------------------------------------- 2: what the schemas cannot see
# PyYAML comes with kubernetes-validate.
if out="$("$VENV/bin/python" - "$DIR" "${MANIFESTS[@]}" <<'PY' 2>&1
import os, sys, yaml

kdir, files = sys.argv[1], sys.argv[2:]
problems = []
def problem(where, what):
    problems.append("%s: %s" % (where, what))

docs = []
for f in files:
    for d in yaml.safe_load_all(open(f)):
        if d:
            docs.append((f, d))
def name(d):
    return "%s/%s" % (d["kind"], d["metadata"]["name"])

kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
listed = sorted(kust.get("resources", []))
present = sorted(os.path.basename(f) for f in files)
if listed != present:
    problem("kustomization.yaml", "lists %s, the directory holds %s" % (listed, present))

workloads = [(f, d) for f, d in docs if d["kind"] in ("Deployment", "StatefulSet")]
services = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Service"}
def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())
def pods_matching(selector):
    return [d for _, d in workloads if matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))]
def port_names(d):
    return {p.get("name") for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}

for f, d in workloads:
    w, spec = name(d), d["spec"]
    pod = spec["template"]["spec"]
    if not matches(spec["selector"]["matchLabels"], spec["template"]["metadata"].get("labels", {})):
        problem(w, "selector does not match the pod template's labels")
    if d["kind"] == "StatefulSet":
        svc = services.get(spec.get("serviceName"))
        if svc is None or svc["spec"].get("clusterIP") != "None":
            problem(w, "serviceName %r is not a headless Service here" % spec.get("serviceName"))
        mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        if not claims or not claims <= mounts:
            problem(w, "volumeClaimTemplates %s not all mounted (mounts: %s)" % (sorted(claims), sorted(mounts)))
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
        problem(w, "pod securityContext needs runAsNonRoot: true and a non-zero runAsUser")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(w, "pod securityContext needs seccompProfile: {type: RuntimeDefault}")
    for c in pod["containers"]:
        where = "%s container %s" % (w, c["name"])
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(where, "securityContext needs readOnlyRootFilesystem: true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(where, "securityContext needs allowPrivilegeEscalation: false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(where, "securityContext needs capabilities: {drop: [ALL]}")
        res = c.get("resources", {})
        if not res.get("requests") or "memory" not in res.get("limits", {}):
            problem(where, "needs resources.requests and a resources.limits.memory")
        names = {p.get("name") for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            for kind in ("httpGet", "tcpSocket"):
                port = c.get(probe, {}).get(kind, {}).get("port")
                if isinstance(port, str) and port not in names:
                    problem(where, "%s names port %r, which the container does not declare" % (probe, port))

for f, d in docs:
    if d["kind"] == "Service":
        sel = d["spec"].get("selector", {})
        targets = pods_matching(sel)
        if not targets:
            problem(name(d), "selector %s matches no workload here" % sel)
        for p in d["spec"].get("ports", []):
            t = p.get("targetPort")
            if isinstance(t, str) and any(t not in port_names(w) for w in targets):
                problem(name(d), "targetPort %r is not a named port of the pods it selects" % t)
    if d["kind"] == "PodDisruptionBudget":
        if not pods_matching(d["spec"]["selector"].get("matchLabels", {})):
            problem(name(d), "selector matches no workload here")

for p in problems:
    print("      " + p)
print("%d resources checked, %d problem(s)" % (len(docs), len(problems)))
sys.exit(1 if problems else 0)
PY
)"; then
    pass "cross-checks: $(tail -1 <<<"$out") (kustomization, selectors, ports, security contexts, resources)"
else
    fail "cross-checks:"
    echo "$out"
fi

# ---------------------------------------------------------------- 3: the TLS component
TLS_OUT="$(mktemp -d "${TMPDIR:-/tmp}/k8s-validate-tls.XXXXXX")"
trap 'rm -rf "$TLS_OUT"' EXIT
if out="$("$VENV/bin/python" - "$DIR/tls" "$TLS_OUT" "${MANIFESTS[@]}" <<'PY' 2>&1
import os, sys, yaml

cdir, out_dir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
comp = yaml.safe_load(open(os.path.join(cdir, "kustomization.yaml")))
assert comp.get("kind") == "Component", "deploy/k8s/tls/kustomization.yaml is not a Component"

def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    named = lambda l: all(isinstance(x, dict) and "name" in x for x in l)
    if isinstance(base, list) and isinstance(patch, list) and named(base) and named(patch):
        out = list(base)
        for p in patch:
            i = next((i for i, b in enumerate(out) if b["name"] == p["name"]), None)
            if i is None:
                out.append(p)
            else:
                out[i] = merge(out[i], p)
        return out
    return patch

key = lambda d: (d["kind"], d["metadata"]["name"])
docs = [d for f in files for d in yaml.safe_load_all(open(f)) if d]
patches = [yaml.safe_load(open(os.path.join(cdir, p["path"]))) for p in comp.get("patches", [])]
problems = []
for p in patches:
    hits = [i for i, d in enumerate(docs) if key(d) == key(p)]
    if len(hits) != 1:
        problems.append("patch %s/%s matches %d resources" % (key(p) + (len(hits),)))
        continue
    docs[hits[0]] = merge(docs[hits[0]], {k: v for k, v in p.items() if k not in ("apiVersion", "kind", "metadata")})
with open(os.path.join(out_dir, "patched.yaml"), "w") as f:
    yaml.safe_dump_all(docs, f, sort_keys=False)

for d in docs:
    if d["kind"] not in ("Deployment", "StatefulSet"):
        continue
    pod = d["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        where = "%s/%s container %s" % (key(d) + (c["name"],))
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        files = [env.get(n) for n in ("DKV_TLS_CERT", "DKV_TLS_KEY", "DKV_TLS_PEER_CA")]
        if not all(files):
            problems.append("%s: DKV_TLS_CERT, DKV_TLS_KEY and DKV_TLS_PEER_CA are not all set" % where)
            continue
        for path in files:
            mount = next((m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
            secret = (volumes.get(mount["name"], {}).get("secret") or {}) if mount else {}
            items = {i["path"] for i in secret.get("items", [])}
            if secret.get("secretName") != "dkv-tls" or os.path.relpath(path, mount["mountPath"]) not in items:
                problems.append("%s: %s is not a file of the Secret dkv-tls mounted there" % (where, path))
        if "DKV_SEED" in env and not env["DKV_SEED"].startswith("https://"):
            problems.append("%s: DKV_SEED %s does not call the seed over https://" % (where, env["DKV_SEED"]))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get is not None and get.get("scheme") != "HTTPS":
                problems.append("%s: %s asks over %s, the port speaks only TLS" % (where, probe, get.get("scheme", "HTTP")))
for p in problems:
    print("      " + p)
print("%d patches applied, %d problem(s)" % (len(patches), len(problems)))
sys.exit(1 if problems else 0)
PY
)"; then
    pass "TLS component: $(tail -1 <<<"$out") (Secret files mounted, https:// to the seed, HTTPS probes)"
    schemas "TLS component, patched" "$TLS_OUT/patched.yaml"
else
    fail "TLS component:"
    echo "$out"
fi

echo "k8s-validate: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
