"""Helpers for deploy/check.sh: split rendered manifests, stage the
rendered gateway.toml for the gateway's own `--check-config --json`,
cross-check the manifests against each other and against what the gateway
says its config is, extract the alert rules for promtool, and check the
metric names the rules and the HPA use against the gateway's sources.

The gateway's config rules (durations, addresses, keys, auth modes) live in
the gateway alone: nothing here parses a value of gateway.toml. Values the
cross-checks need (ports, shutdown_grace, tenants, auth) come from the JSON
that `didit-share-gateway --check-config PATH --json` prints.

Runs in the tools venv (PyYAML); everything else is the standard library.
Each subcommand prints only problems (or one short line per item checked
where the caller wants it) and exits non-zero on the first kind of failure.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

# API groups validated by tools/crd-validate (schemas from the CRDs);
# everything else must be a built-in kind that kubernetes-validate knows.
CRD_GROUPS = ("monitoring.coreos.com", ".istio.io", "external-secrets.io",
              "secrets-store.csi.x-k8s.io")
APP = "didit-share-gateway"
CONFIG_PATH = "/etc/didit-share-gateway/gateway.toml"
SECRET_NAME = "didit-api-keys"


def fail(msg):
    print(f"FAIL {msg}")
    return 1


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(docs, kind, name=None):
    found = [
        d
        for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"].startswith(name))
    ]
    return found


def one(docs, kind, name=None):
    found = find(docs, kind, name)
    if len(found) != 1:
        raise SystemExit(fail(f"expected one {kind} {name or ''}, found {len(found)}"))
    return found[0]


def is_crd(doc):
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return any(group == g or (g.startswith(".") and group.endswith(g)) for g in CRD_GROUPS)


def go_duration_seconds(text):
    """A Go duration as Istio's proxy config writes it: 45s, 1m30s, 1.5h."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(v + u for v, u in parts) != text.strip():
        raise ValueError(f"unsupported duration {text!r}")
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(v) * scale[u] for v, u in parts)


def gateway_toml(docs):
    cm = one(docs, "ConfigMap", f"{APP}-config")
    return cm["data"]["gateway.toml"]


def cmd_split(rendered, core_out, crd_out):
    """Write built-in kinds to CORE_OUT (YAML) and custom resources to
    CRD_OUT (a JSON array for tools/crd-validate)."""
    docs = load(rendered)
    core = [d for d in docs if not is_crd(d)]
    crds = [d for d in docs if is_crd(d)]
    with open(core_out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    with open(crd_out, "w", encoding="utf-8") as f:
        json.dump(crds, f)
    return 0


def toml_sections(text):
    """[(header, lines)] in file order; the preamble has header ''."""
    out = [("", [])]
    for line in text.splitlines():
        if re.match(r"^\[\[?[A-Za-z0-9_.-]+\]\]?\s*(#.*)?$", line):
            out.append((line.split("#")[0].strip(), []))
        out[-1][1].append(line)
    return out


def cmd_config_drift(base, mesh):
    """The mesh overlay's gateway.toml must equal the base's outside [auth]."""
    a = [s for s in toml_sections(Path(base).read_text(encoding="utf-8")) if s[0] != "[auth]"]
    b = [s for s in toml_sections(Path(mesh).read_text(encoding="utf-8")) if s[0] != "[auth]"]
    rc = 0
    for (ha, la), (hb, lb) in zip(a, b):
        if (ha, la) != (hb, lb):
            diff = "\n".join(f"  - {x}\n  + {y}" for x, y in zip(la, lb) if x != y)
            rc = fail(f"{mesh}: section {hb or '(preamble)'} differs from {base}:\n"
                      f"{diff or '  (lines added or removed)'}")
    if len(a) != len(b):
        rc = fail(f"{mesh} and {base} have different sections")
    return rc


def cmd_check_config(binary, rendered, workdir):
    """Run `BINARY --check-config PATH --json` on the rendered gateway.toml,
    with each api_key_file rewritten into WORKDIR (placeholder key files)
    and each api_key_env set to a placeholder. On success, write the
    gateway's JSON, key file paths as the ConfigMap has them, to
    WORKDIR/gateway.json for `crosscheck`."""
    text = gateway_toml(load(rendered))
    # Read only to find the key files and variables to stage.
    config = tomllib.loads(text)
    work = Path(workdir)
    (work / "secrets").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    staged = {}
    for tenant in config.get("tenants", []):
        if "api_key_file" in tenant:
            original = tenant["api_key_file"]
            local = work / "secrets" / Path(original).name
            local.write_text(f"placeholder-key-for-{tenant['id']}\n", encoding="utf-8")
            local.chmod(0o400)
            text = text.replace(f'"{original}"', json.dumps(str(local)))
            staged[str(local)] = original
        if "api_key_env" in tenant:
            env[tenant["api_key_env"]] = f"placeholder-key-for-{tenant['id']}"
    # [state]'s files (Redis URL, encryption key): placeholders of the
    # right shape; the Redis is never contacted by --check-config.
    state = config.get("state", {})
    placeholders = {
        "redis_url_file": "redis://placeholder.invalid:6379/0\n",
        "encryption_key_file": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    }
    for key, content in placeholders.items():
        if key in state:
            original = state[key]
            local = work / "state" / Path(original).name
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(content, encoding="utf-8")
            local.chmod(0o400)
            text = text.replace(f'"{original}"', json.dumps(str(local)))
    path = work / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [binary, "--check-config", str(path), "--json"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        verdict = json.loads(proc.stdout)
    except json.JSONDecodeError:
        verdict = None
    if proc.returncode != 0 or not isinstance(verdict, dict) or verdict.get("ok") is not True:
        error = (verdict or {}).get("error") if isinstance(verdict, dict) else None
        if error:
            print(f"{error['key']}: {error['problem']}")
        else:
            print(proc.stdout + proc.stderr, end="")
        return fail(f"{binary} --check-config rejected the rendered gateway.toml "
                    f"(exit {proc.returncode})")
    for tenant in verdict["tenants"]:
        if "api_key_file" in tenant:
            tenant["api_key_file"] = staged.get(tenant["api_key_file"], tenant["api_key_file"])
    (work / "gateway.json").write_text(json.dumps(verdict, indent=2), encoding="utf-8")
    return 0


def port(addr):
    """The port of an address the gateway printed (`0.0.0.0:50051`, `[::]:50051`)."""
    return int(addr.rsplit(":", 1)[1])


def cmd_crosscheck(rendered, gateway_json, secret_example, overlay):
    """Properties of the rendered manifests that schemas cannot see, against
    GATEWAY_JSON: what the gateway's `--check-config --json` said about the
    rendered gateway.toml (written by `check-config`)."""
    docs = load(rendered)
    config = json.loads(Path(gateway_json).read_text(encoding="utf-8"))
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    dep = one(docs, "Deployment", APP)
    pod = dep["spec"]["template"]["spec"]
    containers = pod["containers"]
    gw = next((c for c in containers if c["name"] == "gateway"), None)
    if gw is None:
        return fail("Deployment has no container named gateway")

    # Hardening.
    psc, csc = pod.get("securityContext", {}), gw.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
         "pod seccompProfile must be RuntimeDefault")
    need(pod.get("automountServiceAccountToken") is False,
         "pod automountServiceAccountToken must be false")
    need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    need(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities.drop must be [ALL]")
    res = gw.get("resources", {})
    need(all(k in res.get("requests", {}) for k in ("cpu", "memory"))
         and "memory" in res.get("limits", {}), "cpu/memory requests and a memory limit")
    sa = one(docs, "ServiceAccount", APP)
    need(sa.get("automountServiceAccountToken") is False,
         "ServiceAccount automountServiceAccountToken must be false")

    # Ports: config, container, probes, Service.
    grpc_port = port(config["server"]["listen"])
    admin_port = port(config["server"]["admin_listen"])
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    need(ports.get("grpc") == grpc_port, f"container port grpc must be {grpc_port}")
    need(ports.get("http-metrics") == admin_port,
         f"container port http-metrics must be {admin_port}")
    ready = gw.get("readinessProbe", {}).get("grpc", {})
    need(ready.get("port") == grpc_port and ready.get("service", "") == "",
         f'readinessProbe must be a native grpc probe on {grpc_port}, service ""')
    live = gw.get("livenessProbe", {}).get("httpGet", {})
    need(live.get("path") == "/healthz" and live.get("port") in ("http-metrics", admin_port),
         f"livenessProbe must be httpGet /healthz on the admin port {admin_port}")
    svc = one(docs, "Service", APP)
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    need(sports.get("grpc", {}).get("appProtocol") == "grpc",
         "Service port grpc needs appProtocol: grpc")
    need("http-metrics" in sports, "Service needs port http-metrics")

    # Shutdown budget: preStop sleep + shutdown_grace fits the grace period.
    sleep = gw.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    grace = config["server"]["shutdown_grace_ms"] / 1000
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    need(isinstance(sleep, int) and sleep > 0, "preStop must be a native sleep action")
    if isinstance(sleep, int):
        need(tgps >= sleep + grace + 5,
             f"terminationGracePeriodSeconds {tgps} < preStop {sleep}s + "
             f"shutdown_grace {grace:g}s + 5s")
    proxy = dep["spec"]["template"]["metadata"].get("annotations", {}).get(
        "proxy.istio.io/config")
    if proxy:
        drain = yaml.safe_load(proxy).get("terminationDrainDuration")
        if drain:
            d = go_duration_seconds(drain)
            need(sleep is None or d >= sleep + grace,
                 f"istio terminationDrainDuration {drain} shorter than preStop + drain")
            need(d <= tgps, f"istio terminationDrainDuration {drain} > grace period {tgps}s")

    # Replicas: the HPA owns them, with a floor of 2, on CPU and on calls
    # in flight per pod (a custom metric; metric-names checks the name).
    hpa = one(docs, "HorizontalPodAutoscaler", APP)
    need("replicas" not in dep["spec"], "Deployment must leave replicas to the HPA")
    need(hpa["spec"].get("minReplicas", 1) >= 2, "HPA minReplicas must be >= 2")
    kinds = {(m["type"], m.get("resource", {}).get("name")
              or m.get("pods", {}).get("metric", {}).get("name"))
             for m in hpa["spec"].get("metrics", [])}
    need(("Resource", "cpu") in kinds, "HPA must scale on CPU")
    need(("Pods", "dsg_grpc_requests_in_flight") in kinds,
         "HPA must scale on the Pods metric dsg_grpc_requests_in_flight")
    one(docs, "PodDisruptionBudget", APP)
    one(docs, "NetworkPolicy", APP)
    one(docs, "ServiceMonitor", APP)
    one(docs, "PrometheusRule", APP)

    # Pod Security: the namespace enforces "restricted" in every overlay.
    ns = one(docs, "Namespace", APP)
    need(ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
         == "restricted", "Namespace must enforce the restricted Pod Security level")

    # Config file and Secret mounts.
    mounts = {m["name"]: m for m in gw.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    args = gw.get("args", [])
    need(args[-2:] == ["--config", CONFIG_PATH], f"args must end with --config {CONFIG_PATH}")
    secret_vol = next((n for n, v in vols.items()
                       if v.get("secret", {}).get("secretName") == SECRET_NAME), None)
    need(secret_vol in mounts, f"Secret {SECRET_NAME} must be mounted")
    secret_dir = mounts.get(secret_vol, {}).get("mountPath", "")
    need("subPath" not in mounts.get(secret_vol, {}),
         "no subPath on the Secret mount (it would stop key rotation)")
    need(mounts.get(secret_vol, {}).get("readOnly") is True,
         f"the {SECRET_NAME} mount must be readOnly")
    need(vols.get(secret_vol, {}).get("secret", {}).get("defaultMode") == 0o400,
         f"the {SECRET_NAME} volume must have defaultMode 0400 (256)")
    example = next(d for d in load(secret_example) if d["kind"] == "Secret")
    keys = set(example.get("stringData", {})) | set(example.get("data", {}))
    need(example["metadata"]["name"] == SECRET_NAME,
         f"example Secret must be named {SECRET_NAME}")
    for key, value in example.get("stringData", {}).items():
        need(value.startswith("REPLACE_WITH_"),
             f"example Secret key {key} must hold a REPLACE_WITH_ placeholder")
    callers = set()
    for t in config["tenants"]:
        callers.update(t["allowed_callers"])
        path = t.get("api_key_file")
        if path:
            need(os.path.dirname(path) == secret_dir,
                 f"tenant {t['id']}: api_key_file {path} is not under {secret_dir}")
            need(os.path.basename(path) in keys,
                 f"tenant {t['id']}: example Secret has no key {os.path.basename(path)}")

    # Callers: NetworkPolicy namespaces (and, in the mesh, principals).
    spiffe = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)$")
    ids = [spiffe.match(c) for c in callers if c != "*"]
    need(all(ids), "allowed_callers must be spiffe://TRUST_DOMAIN/ns/NS/sa/SA ids")
    netpol = one(docs, "NetworkPolicy", APP)
    allowed_ns = set()
    for rule in netpol["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            for expr in peer.get("namespaceSelector", {}).get("matchExpressions", []):
                if expr["key"] == "kubernetes.io/metadata.name":
                    allowed_ns.update(expr.get("values", []))
    for m in filter(None, ids):
        need(m.group(2) in allowed_ns,
             f"NetworkPolicy does not admit caller namespace {m.group(2)}")

    mode = config["auth"]["mode"]
    if overlay == "mesh":
        need(mode == "mesh", f'auth.mode is "{mode}", the mesh overlay needs "mesh"')
        pa = one(docs, "PeerAuthentication", APP)
        need(pa["spec"]["mtls"]["mode"] == "STRICT", "PeerAuthentication must be STRICT")
        ap = one(docs, "AuthorizationPolicy", APP)
        principals = {p for r in ap["spec"].get("rules", [])
                      for f in r.get("from", [])
                      for p in f.get("source", {}).get("principals", [])}
        wanted = {c.removeprefix("spiffe://") for c in callers if c != "*"}
        need(principals == wanted,
             f"AuthorizationPolicy principals {sorted(principals)} != "
             f"allowed_callers {sorted(wanted)}")
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        need(labels.get("sidecar.istio.io/inject") == "true", "pod must ask for the sidecar")
        proxy_id = config["auth"].get("trusted_proxy_identity")
        own = (f"spiffe://cluster.local/ns/{dep['metadata'].get('namespace')}"
               f"/sa/{pod.get('serviceAccountName')}")
        need(proxy_id in (None, own),
             f"auth.trusted_proxy_identity {proxy_id} is not the pod's own identity {own}")
        xfcc = ((yaml.safe_load(proxy) if proxy else None) or {}).get(
            "proxyHeaders", {}).get("forwardedClientCert")
        need(xfcc == "SANITIZE_SET",
             "the sidecar must sanitise x-forwarded-client-cert: proxy.istio.io/config "
             "proxyHeaders.forwardedClientCert: SANITIZE_SET")
    else:
        need(mode == "none", f'auth.mode is "{mode}", the base ships "none"')

    for p in problems:
        fail(f"{overlay}: {p}")
    return 1 if problems else 0


# A dsg_ metric name in PromQL, not part of a recording rule's name
# (namespace:dsg_...:rate5m).
METRIC_REF = re.compile(r"(?<![\w:])dsg_[a-z0-9_]+(?![\w:])")
# Where the gateway registers a metric: `registry.register("name", ...)`
# under the `dsg` prefix (src/metrics.rs).
METRIC_REGISTRATION = re.compile(r"\.register(?:_with_unit)?\(\s*\"([a-z0-9_]+)\"")
SAMPLE_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
PROPOSED_GROUP_SUFFIX = ".proposed"


def exported_metrics(src_dir):
    """Every sample name the gateway can export, from its metric registrations."""
    names = set()
    for path in sorted(Path(src_dir).rglob("*.rs")):
        for base in METRIC_REGISTRATION.findall(path.read_text(encoding="utf-8")):
            names.update(f"dsg_{base}{suffix}" for suffix in SAMPLE_SUFFIXES)
    return names


def cmd_spec(rendered, out):
    """Write the PrometheusRule's spec (the rule groups) to OUT for promtool."""
    rule = one(load(rendered), "PrometheusRule", APP)
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(rule["spec"], f, sort_keys=False)
    return 0


def cmd_metric_names(rendered, src_dir):
    """Every dsg_ metric the alert rules and the HPA use is one the gateway
    registers (src/), except in rule groups named *.proposed, whose missing
    names are listed (they are what the gateway should add)."""
    docs = load(rendered)
    exported = exported_metrics(src_dir)
    if not exported:
        return fail(f"no metric registrations found under {src_dir}")
    rc = 0
    proposed = set()
    for group in one(docs, "PrometheusRule", APP)["spec"]["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            missing = sorted(set(METRIC_REF.findall(rule["expr"])) - exported)
            if group["name"].endswith(PROPOSED_GROUP_SUFFIX):
                proposed.update(missing)
            elif missing:
                rc = fail(f"rule {name} (group {group['name']}) uses metrics the gateway "
                          f"does not export: {', '.join(missing)}")
    for m in one(docs, "HorizontalPodAutoscaler", APP)["spec"].get("metrics", []):
        metric = m.get("pods", {}).get("metric", {}).get("name")
        if metric and metric not in exported:
            rc = fail(f"HPA Pods metric {metric} is not a metric the gateway exports")
    if proposed:
        print(f"proposed, not exported yet: {', '.join(sorted(proposed))}")
    return rc


def main(argv):
    commands = {
        "split": cmd_split,
        "config-drift": cmd_config_drift,
        "check-config": cmd_check_config,
        "crosscheck": cmd_crosscheck,
        "spec": cmd_spec,
        "metric-names": cmd_metric_names,
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(f"usage: {argv[0]} {{{'|'.join(commands)}}} ARGS...", file=sys.stderr)
        return 64
    return commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
