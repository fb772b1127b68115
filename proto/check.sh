#!/usr/bin/env bash
# proto/check.sh: checks the public API definition with buf, and that the
# shipped code-generation template (buf.gen.yaml) works.
#
#   buf lint      STANDARD rules, exceptions listed in buf.yaml
#   buf format    the .proto files are formatted as buf formats them
#   buf build     the module compiles
#   buf generate  buf.gen.yaml with its remote plugins swapped for local
#                 ones (CI has no access to buf.build), managed-mode
#                 prefixes set to a test module; the Go stubs are then
#                 built with Debian's grpc-go and the Java stubs compiled
#                 with Debian's grpc-java. Runs only when the local plugins
#                 are installed (tests/clients/run.sh installs them);
#                 otherwise says so.
#
# buf comes from npm (@bufbuild/buf ships the binary), installed quietly
# into BUF_HOME (default target/tools/buf-VERSION) and reused while the
# version matches. Needs node and npm (installed from Debian when missing
# and running as root); no network but the package registries.
# Prints one line per check and exits 1 if any failed.
set -euo pipefail

buf_version=1.75.0
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
buf_home=${BUF_HOME:-$repo/target/tools/buf-$buf_version}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false

passed=0
failed=0

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

install_buf() {
  local bin=$buf_home/node_modules/.bin/buf
  if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$buf_version" ]; then
    return
  fi
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "proto/check.sh: npm not found (apt-get install nodejs npm)" >&2
      exit 1
    fi
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends nodejs npm; } >"$work/apt.log" 2>&1; then
      cat "$work/apt.log" >&2
      echo "proto/check.sh: installing nodejs and npm failed" >&2
      exit 1
    fi
  fi
  rm -rf "$buf_home"
  mkdir -p "$buf_home"
  if ! npm install --silent --no-audit --no-fund --prefix "$buf_home" \
    "@bufbuild/buf@$buf_version" >"$work/install.log" 2>&1; then
    cat "$work/install.log" >&2
    echo "proto/check.sh: npm install @bufbuild/buf@$buf_version failed" >&2
    exit 1
  fi
}

install_buf
buf=$buf_home/node_modules/.bin/buf
printf 'tools: buf %s\n' "$("$buf" --version)"

check "buf lint (buf.yaml)" "$buf" lint
check "buf format --diff" "$buf" format --diff --exit-code
check "buf build" "$buf" build -o "$work/image.binpb"

# ---- buf generate with the shipped template, local plugins ----------------
go_prefix=example.test/ci/gen/go
java_prefix=com.example.ci
protoc=/usr/bin/protoc
go_plugin=/usr/bin/protoc-gen-go
go_grpc_plugin=/usr/bin/protoc-gen-go-grpc
java_grpc_plugin=/usr/bin/grpc_java_plugin

# local_template: buf.gen.yaml with each remote plugin replaced by its local
# equivalent, Go's paths=source_relative dropped (so the output path shows
# the go_package that managed mode chose) and the prefixes set to a test
# module. Fails if the shipped file no longer has the lines it rewrites.
local_template() {
  awk -v go="$go_plugin" -v gogrpc="$go_grpc_plugin" -v jgrpc="$java_grpc_plugin" \
    -v protoc="$protoc" -v goprefix="$go_prefix" -v javaprefix="$java_prefix" '
    /file_option: go_package_prefix/ { print; getline; sub(/value: .*/, "value: " goprefix); print; seen["goprefix"]++; next }
    /file_option: java_package_prefix/ { print; getline; sub(/value: .*/, "value: " javaprefix); print; seen["javaprefix"]++; next }
    /- remote: buf.build\/protocolbuffers\/go$/ { sub(/remote: .*/, "local: " go); print; seen["go"]++; next }
    /- remote: buf.build\/grpc\/go$/ { sub(/remote: .*/, "local: " gogrpc); print; seen["gogrpc"]++; next }
    /- remote: buf.build\/protocolbuffers\/java$/ {
      sub(/remote: .*/, "protoc_builtin: java"); print
      print "    protoc_path: " protoc; seen["java"]++; next }
    /- remote: buf.build\/grpc\/java$/ { sub(/remote: .*/, "local: " jgrpc); print; seen["jgrpc"]++; next }
    /opt: paths=source_relative/ { next }
    /remote:/ { print "unexpected remote plugin: " $0 > "/dev/stderr"; bad = 1 }
    { print }
    END {
      n = split("goprefix javaprefix go gogrpc java jgrpc", want, " ")
      for (i = 1; i <= n; i++) if (!seen[want[i]]) { print "buf.gen.yaml: no " want[i] " line to rewrite" > "/dev/stderr"; bad = 1 }
      exit bad
    }' buf.gen.yaml
}

generate() {
  local_template >"$work/buf.gen.local.yaml" &&
    "$buf" generate --template "$work/buf.gen.local.yaml" -o "$work/out" &&
    test -s "$work/out/gen/go/$go_prefix/didit/share/v1/share.pb.go" &&
    test -s "$work/out/gen/go/$go_prefix/didit/share/v1/share_grpc.pb.go" &&
    test -s "$work/out/gen/java/${java_prefix//.//}/didit/share/v1/ImportServiceGrpc.java" &&
    test -s "$work/out/gen/java/${java_prefix//.//}/didit/share/v1/ErrorReason.java"
}

# The generated Go package, built in GOPATH mode against Debian's grpc-go
# (the module proxy is not used).
go_build() {
  local gopath=$work/gopath
  mkdir -p "$gopath/src"
  cp -r "$work/out/gen/go/." "$gopath/src/"
  env GO111MODULE=off GOFLAGS= GOPATH="$gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
    /usr/lib/go/bin/go build "$go_prefix/didit/share/v1"
}

# The generated Java sources, compiled against Debian's grpc-java jars.
java_build() {
  local cp="" j
  for j in grpc-api grpc-core grpc-context grpc-stub grpc-protobuf grpc-protobuf-lite \
    protobuf guava jsr305 error_prone_annotations geronimo-annotation-1.3-spec; do
    cp+=/usr/share/java/$j.jar:
  done
  mkdir -p "$work/classes"
  find "$work/out/gen/java" -name '*.java' -print0 |
    xargs -0 javac -nowarn -encoding UTF-8 -d "$work/classes" -cp "$cp"
}

missing=()
for tool in "$protoc" "$go_plugin" "$go_grpc_plugin" "$java_grpc_plugin" /usr/lib/go/bin/go javac; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  printf 'skip  buf generate with local plugins: not installed: %s\n' "${missing[*]}"
  printf '      (tests/clients/run.sh installs them from Debian)\n'
else
  check "buf generate (buf.gen.yaml, local plugins, managed prefixes)" generate
  if [ -s "$work/out/gen/go/$go_prefix/didit/share/v1/share.pb.go" ]; then
    check "generated Go stubs build (grpc-go)" go_build
    check "generated Java stubs compile (grpc-java)" java_build
  fi
fi

printf 'proto: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
