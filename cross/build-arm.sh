#!/usr/bin/env bash
# Docker-free ARM build, as CI runs it (see cross/README.md):
#   1. installs what it needs: qemu-user and the armhf/arm64 glibc runtimes
#      (Debian), zig (PyPI `ziglang`), cargo-zigbuild (crates.io), the rustup
#      targets;
#   2. builds edgegated and edgegate in release for armv7 and aarch64 with
#      cargo-zigbuild against glibc $GLIBC_FLOOR's symbols;
#   3. prints each binary's (stripped) size and glibc floor, and fails if the
#      armv7 edgegated is not under 8 MB or a floor is above $GLIBC_FLOOR;
#   4. runs the proto tests and the policy/store unit tests for armv7 under
#      qemu-arm;
#   5. smoke-runs the armv7 `edgegated --demo` under qemu and opens one session
#      through it with the host's client (skipped, saying so, until the daemon
#      has --demo; set ARM_SMOKE=require to make that an error);
#   6. packages both targets with cargo-deb and checks the .debs.
#
# Environment: GLIBC_FLOOR (default 2.28), ARM_TARGETS (default both),
# ARM_STEPS (default "install build check test smoke deb", to run a subset),
# ARM_SKIP_TESTS=1, ARM_SMOKE=skip|auto|require (default auto), ARM_DEB=0 (no .debs),
# NICE (default 10: the build shares the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC_FLOOR="${GLIBC_FLOOR:-2.28}"
ARM_TARGETS="${ARM_TARGETS:-armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu}"
ARM_SMOKE="${ARM_SMOKE:-auto}"
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
MAX_ARMV7_DAEMON_BYTES=$((8 * 1024 * 1024))
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_DEB_VERSION=3.8.0
NICE=(nice -n "${NICE:-10}")
export CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0

T0=$SECONDS
step() { printf '\n==> %s (+%ss)\n' "$*" "$((SECONDS - T0))"; }

# Debian's names for the qemu sysroot of each Rust target.
sysroot() {
  case "$1" in
    armv7-*) echo /usr/arm-linux-gnueabihf ;;
    aarch64-*) echo /usr/aarch64-linux-gnu ;;
  esac
}
qemu_bin() {
  case "$1" in
    armv7-*) echo qemu-arm ;;
    aarch64-*) echo qemu-aarch64 ;;
  esac
}
runner_var() { # CARGO_TARGET_<TRIPLE>_RUNNER
  echo "CARGO_TARGET_$(echo "$1" | tr 'a-z-' 'A-Z_')_RUNNER"
}

install_tools() {
  step "install: Debian qemu-user and ARM glibc runtimes"
  local pkgs=()
  command -v qemu-arm >/dev/null && command -v qemu-aarch64 >/dev/null || pkgs+=(qemu-user)
  [ -e /usr/arm-linux-gnueabihf/lib/libc.so.6 ] || pkgs+=(libc6-armhf-cross libgcc-s1-armhf-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || pkgs+=(libc6-arm64-cross libgcc-s1-arm64-cross)
  command -v readelf >/dev/null || pkgs+=(binutils)
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  echo "qemu: $(qemu-arm --version | head -n1)"

  step "install: zig (PyPI ziglang $ZIGLANG_VERSION) and cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
  # cargo-zigbuild finds zig through `python3 -m ziglang` when no zig is on PATH.
  python3 -m ziglang version >/dev/null 2>&1 \
    || python3 -m pip install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION"
  echo "zig: $(python3 -m ziglang version)"
  command -v cargo-zigbuild >/dev/null \
    || "${NICE[@]}" cargo install --locked --quiet cargo-zigbuild --version "$CARGO_ZIGBUILD_VERSION"

  step "install: rustup targets"
  # shellcheck disable=SC2086
  rustup target add $ARM_TARGETS
}

build() {
  local t
  for t in $ARM_TARGETS; do
    step "build: release $t (glibc $GLIBC_FLOOR)"
    local s=$SECONDS
    "${NICE[@]}" cargo zigbuild --locked --release --target "$t.$GLIBC_FLOOR" --bins
    echo "built $t in $((SECONDS - s))s"
  done
}

check_binaries() {
  step "check: stripped sizes and glibc floors"
  local t b path size floor fail=0
  for t in $ARM_TARGETS; do
    for b in edgegated edgegate; do
      path="$TARGET_DIR/$t/release/$b"
      if readelf -S "$path" | grep -q '\.symtab'; then
        echo "error: $path is not stripped (release profile must keep strip = true)" >&2
        fail=1
      fi
      size=$(stat -c %s "$path")
      floor=$(cross/glibc-floor.sh "$path")
      printf '%-32s %-10s %9d bytes (%s MiB)  glibc >= %s\n' "$t" "$b" "$size" \
        "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')" "$floor"
      cross/glibc-floor.sh --max "$GLIBC_FLOOR" "$path" >/dev/null || fail=1
      if [ "$b" = edgegated ] && [[ "$t" == armv7-* ]] && [ "$size" -ge "$MAX_ARMV7_DAEMON_BYTES" ]; then
        echo "error: $path is $size bytes, over the 8 MB budget" >&2
        fail=1
      fi
    done
  done
  return "$fail"
}

arm_tests() {
  local t=armv7-unknown-linux-gnueabihf
  step "test: proto and policy/store unit tests for $t under qemu"
  local s=$SECONDS
  export "$(runner_var $t)=qemu-arm -L $(sysroot $t)"
  "${NICE[@]}" cargo-zigbuild test --locked --target "$t.$GLIBC_FLOOR" -p edgegate-proto
  # Filters are OR-ed: every lib test whose path contains policy or store.
  "${NICE[@]}" cargo-zigbuild test --locked --target "$t.$GLIBC_FLOOR" -p edgegate --lib -- policy store
  echo "armv7 tests in $((SECONDS - s))s"
}

# The smoke test opens one real session from the host's client to the armv7
# daemon's demo under qemu. It relies on what `edgegated --demo` prints
# (DESIGN §6: "the commands to try"): at least one line containing an
# `edgegate connect ...` command, runnable as printed once `edgegate` names the
# host's client. It passes when that client prints `ready`. A subshell, so its
# EXIT trap stops the demo and the client whatever happens.
smoke() (
  t=armv7-unknown-linux-gnueabihf
  daemon="$TARGET_DIR/$t/release/edgegated"
  daemon_cmd=(qemu-arm -L "$(sysroot $t)" "$daemon")
  # For testing this function itself: another daemon command / client binary.
  # shellcheck disable=SC2206
  [ -z "${ARM_SMOKE_DAEMON:-}" ] || daemon_cmd=($ARM_SMOKE_DAEMON)
  step "smoke: armv7 edgegated --demo under qemu"
  if [ "$ARM_SMOKE" = skip ]; then
    echo "SKIPPED: ARM_SMOKE=skip"
    return 0
  fi
  if ! timeout 120 "${daemon_cmd[@]}" --help 2>&1 | grep -q -- '--demo'; then
    if [ "$ARM_SMOKE" = require ]; then
      echo "error: edgegated --help does not mention --demo" >&2
      return 1
    fi
    echo "SKIPPED: edgegated has no --demo yet (its --help does not mention it)"
    return 0
  fi

  client="${ARM_SMOKE_CLIENT:-$TARGET_DIR/debug/edgegate}"
  [ -n "${ARM_SMOKE_CLIENT:-}" ] || "${NICE[@]}" cargo build --locked --quiet --bin edgegate
  dir=$(mktemp -d)
  "${daemon_cmd[@]}" --demo >"$dir/demo.out" 2>"$dir/demo.err" &
  demo_pid=$!
  connect_pid=""
  # shellcheck disable=SC2154 # connect_pid is read when the trap runs
  trap 'kill $demo_pid $connect_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

  cmds=""
  for _ in $(seq 1 120); do # qemu is slow: up to 60 s to print the commands
    cmds=$(grep -o 'edgegate connect .*' "$dir/demo.out" || true)
    [ -n "$cmds" ] && break
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.5
  done
  sleep 2 # let the demo finish printing its commands
  cmds=$(grep -o 'edgegate connect .*' "$dir/demo.out" || true)
  if [ -z "$cmds" ]; then
    echo "error: the demo printed no 'edgegate connect' command" >&2
    sed 's/^/demo| /' "$dir/demo.out" "$dir/demo.err" >&2
    return 1
  fi
  # The demo may also show a denied session: the first command whose session
  # gets to `ready` counts.
  ok=0
  while IFS= read -r cmd; do
    echo "demo under qemu is up; running on the host: $cmd"
    # The command as printed, with the host's client binary.
    bash -c "exec \"$client\" ${cmd#edgegate }" >"$dir/connect.out" 2>"$dir/connect.err" &
    connect_pid=$!
    for _ in $(seq 1 120); do
      if grep -qx 'ready' "$dir/connect.out"; then ok=1; break; fi
      kill -0 "$connect_pid" 2>/dev/null || break
      sleep 0.5
    done
    sed 's/^/client| /' "$dir/connect.out" "$dir/connect.err"
    [ "$ok" = 1 ] && break
    kill "$connect_pid" 2>/dev/null || true
  done <<<"$cmds"
  if [ "$ok" != 1 ]; then
    echo "error: no session: the client never printed 'ready'" >&2
    sed 's/^/demo| /' "$dir/demo.out" "$dir/demo.err" >&2
    return 1
  fi
  # One stream through the session, if the command forwards a local port.
  port=$(echo "$cmd" | grep -o -- '-L [^ ]*' | head -n1 | sed 's/^-L //; s/=.*//; s/.*://' || true)
  if [ -n "$port" ]; then
    if timeout 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf 'GET / HTTP/1.0\r\n\r\n' >&3; head -c 200 <&3" >"$dir/stream.out" 2>&1; then
      echo "stream through 127.0.0.1:$port: $(head -n1 "$dir/stream.out" | tr -d '\r')"
    else
      echo "note: no answer through forwarded port $port (not fatal)"
    fi
  fi
  echo "smoke: one session opened through the armv7 daemon under qemu"
)

debs() {
  [ "${ARM_DEB:-1}" = 1 ] || return 0
  step "package: cargo-deb $CARGO_DEB_VERSION"
  command -v cargo-deb >/dev/null \
    || "${NICE[@]}" cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
  local t deb depends listing f fail=0
  for t in $ARM_TARGETS; do
    deb=$(cargo deb --no-build --no-strip --target "$t" | tail -n1)
    depends=$(dpkg-deb -f "$deb" Depends)
    printf '%s: %s bytes, Architecture %s, Depends %s\n' "$deb" "$(stat -c %s "$deb")" \
      "$(dpkg-deb -f "$deb" Architecture)" "$depends"
    if [ "$depends" != "libc6 (>= $GLIBC_FLOOR)" ]; then
      echo "error: $deb depends on '$depends', expected libc6 (>= $GLIBC_FLOOR)" >&2
      fail=1
    fi
    listing=$(dpkg-deb -c "$deb")
    for f in ./usr/bin/edgegated ./usr/bin/edgegate ./lib/systemd/system/edgegated.service \
      ./usr/lib/sysusers.d/edgegate.conf ./usr/lib/tmpfiles.d/edgegate.conf ./etc/edgegate/edgegated.toml; do
      grep -q " $f\$" <<<"$listing" || { echo "error: $deb lacks $f" >&2; fail=1; }
    done
    grep -qx /etc/edgegate/edgegated.toml <<<"$(dpkg-deb -I "$deb" conffiles)" \
      || { echo "error: $deb: the config is not a conffile" >&2; fail=1; }
  done
  return "$fail"
}

steps="${ARM_STEPS:-install build check test smoke deb}"
has() { [[ " $steps " == *" $1 "* ]]; }
if has install; then install_tools; fi
if has build; then build; fi
if has check; then check_binaries; fi
if has test && [ "${ARM_SKIP_TESTS:-0}" != 1 ]; then arm_tests; fi
if has smoke; then smoke; fi
if has deb; then debs; fi
step "done: cross/build-arm.sh took $((SECONDS - T0))s"
