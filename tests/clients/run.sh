#!/usr/bin/env bash
# Real Go, Java and Python gRPC clients against the real gateway binary.
#
#   tests/clients/run.sh
#
# 1. installs what the clients need: Debian packages (only those missing) and
#    a Python venv under tests/clients/.build/ (gitignored);
# 2. builds the gateway (`cargo build --bin didit-share-gateway`), or uses
#    $GATEWAY_BIN;
# 3. generates each client's stubs from proto/ (nothing generated is
#    committed) and compiles the clients;
# 4. starts `didit-share-gateway --sandbox` on free loopback ports and waits
#    until /readyz and the sandbox answer;
# 5. runs the go, java and python clients (each prints one PASS/FAIL line
#    per check), prints a summary and exits non-zero if any check failed.
#    Each client builds its channel with the shipped gRPC service config,
#    proto/didit/share/v1/service_config.json (a broken file fails them).
#
# Quiet: install and build output goes to tests/clients/.build/setup.log and
# is printed only when a step fails. The gateway's output is in
# tests/clients/.build/gateway.log.
#
# Env: GATEWAY_BIN  a prebuilt didit-share-gateway (skips cargo build)
#      CLIENTS      which clients to run (default: "go java python")
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$here/.build
log=$build/setup.log
clients=${CLIENTS:-go java python}
mkdir -p "$build"
: >"$log"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'run.sh: %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME CMD...: run CMD quietly into the log; on failure print the log and stop.
step() {
  local name=$1
  shift
  printf '\n== %s: %s\n' "$name" "$*" >>"$log"
  if ! "$@" >>"$log" 2>&1 </dev/null; then
    say "$name failed; $log follows"
    cat "$log"
    exit 1
  fi
}

# ---------------------------------------------------------------- install
t_install=$(now)

apt_wanted=(
  # protoc, the well-known types, the health proto
  protobuf-compiler libprotobuf-dev grpc-proto
  # Go: grpc-go 1.33 and friends, built in GOPATH mode (no module proxy)
  golang-go golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev
  protoc-gen-go protoc-gen-go-grpc
  # Java: grpc-java 1.41 over Netty, and javax.annotation.Generated for Java 17
  libgrpc-java protobuf-compiler-grpc-java-plugin libprotobuf-java libnetty-java
  libguava-java libperfmark-java libjsr305-java liberror-prone-java
  libgeronimo-annotation-1.3-spec-java
)
command -v javac >/dev/null || apt_wanted+=(default-jdk-headless)
command -v curl >/dev/null || apt_wanted+=(curl)
command -v python3 >/dev/null || apt_wanted+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_wanted+=(python3-venv)

apt_missing=()
for p in "${apt_wanted[@]}"; do
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || apt_missing+=("$p")
done
if ((${#apt_missing[@]})); then
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo -n)
  say "installing ${#apt_missing[@]} Debian packages"
  step apt-update "${sudo[@]}" apt-get update -q
  step apt-install "${sudo[@]}" apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

# Python: grpcio, grpcio-tools, grpcio-status, grpcio-health-checking (pinned).
venv=$build/venv
if ! cmp -s "$here/python/requirements.txt" "$venv/.requirements"; then
  say "creating the Python venv"
  rm -rf "$venv"
  step venv python3 -m venv "$venv"
  step pip "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/python/requirements.txt"
  cp "$here/python/requirements.txt" "$venv/.requirements"
fi
t_install=$(since "$t_install")

# ---------------------------------------------------------------- gateway
t_gateway=$(now)
if [[ -n ${GATEWAY_BIN:-} ]]; then
  gateway=$GATEWAY_BIN
else
  say "building didit-share-gateway"
  step cargo-build cargo build --manifest-path "$root/Cargo.toml" --bin didit-share-gateway
  gateway=${CARGO_TARGET_DIR:-$root/target}/debug/didit-share-gateway
fi
[[ -x $gateway ]] || { say "no gateway binary at $gateway"; exit 1; }
t_gateway=$(since "$t_gateway")

# ---------------------------------------------------------------- clients
# Debian's protoc (3.21) matches Debian's protobuf-java runtime; a newer
# protoc elsewhere on PATH would not.
t_clients=$(now)
protoc=/usr/bin/protoc
share_proto=$root/proto/didit/share/v1/share.proto
service_config=$root/proto/didit/share/v1/service_config.json

# Go: GOPATH mode against /usr/share/gocode.
gobuild=$build/go
rm -rf "$gobuild/src" "$gobuild/go-client"
mkdir -p "$gobuild/src/didit-go-client"
step go-protoc "$protoc" -I "$root/proto" \
  --plugin=protoc-gen-go=/usr/bin/protoc-gen-go --go_out="$gobuild/src" \
  --plugin=protoc-gen-go-grpc=/usr/bin/protoc-gen-go-grpc --go-grpc_out="$gobuild/src" \
  "$share_proto"
cp "$here/go/main.go" "$gobuild/src/didit-go-client/"
step go-build env GO111MODULE=off GOFLAGS= GOPATH="$gobuild:/usr/share/gocode" GOCACHE="$gobuild/cache" \
  /usr/lib/go/bin/go build -o "$gobuild/go-client" didit-go-client

# Java: plain javac. google.rpc's status.proto and error_details.proto are
# copied at test time from the googleapis-common-protos wheel in the venv
# (Debian packages no Java google.rpc classes); the health stubs come from
# Debian's grpc-proto (Debian has no grpc-services jar).
jbuild=$build/java
rm -rf "$jbuild"
mkdir -p "$jbuild/proto/google/rpc" "$jbuild/src" "$jbuild/classes"
rpc_protos=$("$venv/bin/python" -c 'import os, google.rpc.status_pb2 as m; print(os.path.dirname(m.__file__))')
cp "$rpc_protos/status.proto" "$rpc_protos/error_details.proto" "$jbuild/proto/google/rpc/"
step java-protoc "$protoc" -I "$root/proto" -I "$jbuild/proto" -I /usr/share/grpc-proto \
  --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin \
  --java_out="$jbuild/src" --grpc-java_out="$jbuild/src" \
  "$share_proto" "$jbuild/proto/google/rpc/status.proto" "$jbuild/proto/google/rpc/error_details.proto" \
  /usr/share/grpc-proto/grpc/health/v1/health.proto
jars=(grpc-api grpc-core grpc-context grpc-stub grpc-protobuf grpc-protobuf-lite grpc-netty
  protobuf guava jsr305 error_prone_annotations perfmark-api geronimo-annotation-1.3-spec
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-common netty-handler
  netty-resolver netty-transport)
classpath=$jbuild/classes
for j in "${jars[@]}"; do classpath+=:/usr/share/java/$j.jar; done
mapfile -t java_sources < <(find "$jbuild/src" -name '*.java' | sort)
step java-build javac -nowarn -encoding UTF-8 -d "$jbuild/classes" -cp "$classpath" \
  "${java_sources[@]}" "$here/java/DiditClient.java"

# Python: grpc_tools' own protoc.
pbuild=$build/python
rm -rf "$pbuild"
mkdir -p "$pbuild"
step python-protoc "$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$pbuild" --grpc_python_out="$pbuild" "$share_proto"
t_clients=$(since "$t_clients")

# ---------------------------------------------------------------- start
t_run=$(now)
gw_pid=
stop_gateway() {
  [[ -n $gw_pid ]] || return 0
  if kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$gw_pid" 2>/dev/null || true
  fi
  wait "$gw_pid" 2>/dev/null || true
  gw_pid=
}
trap stop_gateway EXIT
trap 'exit 130' INT TERM

free_ports() {
  "$venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
}

ready=
for attempt in 1 2 3; do
  read -r grpc_port admin_port sandbox_port webhooks_port < <(free_ports)
  "$gateway" --sandbox --listen "127.0.0.1:$grpc_port" --admin-listen "127.0.0.1:$admin_port" \
    --sandbox-listen "127.0.0.1:$sandbox_port" --webhooks-listen "127.0.0.1:$webhooks_port" >"$build/gateway.log" 2>&1 </dev/null &
  gw_pid=$!
  for _ in $(seq 300); do # 60 s
    if ! kill -0 "$gw_pid" 2>/dev/null; then break; fi
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$admin_port/readyz" 2>/dev/null &&
      curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$sandbox_port/_sandbox/applications" 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.2
  done
  [[ -n $ready ]] && break
  if kill -0 "$gw_pid" 2>/dev/null; then
    say "the gateway is running but not ready after 60 s; gateway.log follows"
    cat "$build/gateway.log"
    exit 1
  fi
  # A gateway that exited early (e.g. a port taken meanwhile) gets new ports.
  say "the gateway exited during start-up (attempt $attempt); gateway.log follows"
  cat "$build/gateway.log"
  stop_gateway
done
[[ -n $ready ]] || { say "the gateway did not become ready"; exit 1; }
say "gateway ready: grpc 127.0.0.1:$grpc_port, admin :$admin_port, sandbox :$sandbox_port"

# ---------------------------------------------------------------- run
grpc_addr=127.0.0.1:$grpc_port
sandbox_url=http://127.0.0.1:$sandbox_port
total_passed=0
total_failed=0
summary=()
for c in $clients; do
  case $c in
    # Older grpc-go (Debian's 1.33) applies a service config's retry
    # policy only with GRPC_GO_RETRY=on; releases since late 2021 by default.
    go) cmd=(env GRPC_GO_RETRY=on "$gobuild/go-client") ;;
    java) cmd=(java -cp "$classpath" DiditClient) ;;
    python) cmd=(env PYTHONPATH="$pbuild" "$venv/bin/python" "$here/python/client.py") ;;
    *) say "unknown client $c"; exit 2 ;;
  esac
  say "running the $c client"
  set +e
  timeout 180 "${cmd[@]}" "$grpc_addr" "$sandbox_url" "$service_config" 2>"$build/$c.stderr" </dev/null |
    tee "$build/$c.out"
  rc=${PIPESTATUS[0]}
  set -e
  line=$(grep -E "^$c: [0-9]+ passed, [0-9]+ failed$" "$build/$c.out" | tail -n1 || true)
  passed=$(awk '{print $2}' <<<"${line:-x 0}")
  failed=$(awk '{print $4}' <<<"${line:-x 0 x 0}")
  if [[ $rc != 0 && $failed == 0 ]]; then
    failed=1 # crashed or timed out before its summary
    say "the $c client exited $rc without a failed check; its stderr follows"
    cat "$build/$c.stderr"
  elif [[ $rc != 0 && -s $build/$c.stderr ]]; then
    say "the $c client's stderr:"
    cat "$build/$c.stderr"
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  summary+=("$(printf '  %-7s %3d passed, %d failed (exit %d)' "$c" "$passed" "$failed" "$rc")")
done
stop_gateway
t_run=$(since "$t_run")

echo
echo "summary:"
printf '%s\n' "${summary[@]}"
echo "timing: install ${t_install}s, gateway build ${t_gateway}s, client builds ${t_clients}s, run ${t_run}s"
echo "clients: $total_passed passed, $total_failed failed"
((total_failed == 0))
