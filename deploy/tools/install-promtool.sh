#!/usr/bin/env bash
# deploy/tools/install-promtool.sh DIR: prints the path of a promtool,
# installing one first if needed. A promtool on PATH is used as is;
# otherwise Debian's prometheus package is unpacked (not installed) into
# DIR/prometheus with `apt-get download` + `dpkg -x`, redone only when the
# candidate version changes. Used by deploy/check.sh and .ci/run.
set -euo pipefail

dir=${1:?usage: install-promtool.sh DIR}/prometheus
log=$(mktemp)
trap 'rm -f "$log"' EXIT

die() {
  echo "install-promtool.sh: $*" >&2
  exit 1
}

quietly() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "install step failed: $*"
  fi
}

if command -v promtool >/dev/null; then
  command -v promtool
  exit 0
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
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/deb"
(cd "$dir/deb" && quietly apt-get download prometheus)
quietly dpkg -x "$dir"/deb/prometheus_*.deb "$dir"
rm -rf "${dir:?}/deb" "${dir:?}/usr/share" "${dir:?}/usr/bin/prometheus"
printf '%s\n' "$version" >"$dir/.stamp"
printf '%s\n' "$dir/usr/bin/promtool"
