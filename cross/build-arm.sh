#!/usr/bin/env bash
# Docker-free ARM build, as CI runs it (see cross/README.md). As root on
# Debian/Ubuntu with only the Rust toolchain (rustup, cargo, a host cc):
#   1. installs what it needs: qemu-user, the armhf/arm64 glibc runtimes and
#      binutils (Debian, after apt-get update), zig (PyPI `ziglang`, pinned,
#      into its own directory), cargo-zigbuild and cargo-deb (crates.io,
#      pinned, --locked), the rustup targets;
#   2. builds edgegated and edgegate in release for armv7 and aarch64 with
#      cargo-zigbuild against glibc $GLIBC_FLOOR's symbols;
#   3. checks each binary is stripped, its size and its glibc floor; fails if
#      the armv7 edgegated is not under 8 MB or a floor is above $GLIBC_FLOOR;
#   4. runs the proto tests and the policy/store unit tests for armv7 under
#      qemu-arm;
#   5. smoke session: the armv7 `edgegated --demo` under qemu-arm; the host's
#      client runs the demo's first `edgegate connect` command (Henk) and must
#      print `ready`, an HTTP GET through its first -L port must return the
#      demo's PLC page, over QUIC and over the TLS fallback; the demo's second
#      command (Bert) must be denied the PLC page;
#   6. packages both targets with cargo-deb and checks the .debs;
# then prints a summary: binaries, sizes, floors, test counts, the smoke
# session's client output, the .debs, the time taken.
#
# Environment: GLIBC_FLOOR (default 2.28), ARM_TARGETS (default both),
# ARM_STEPS (default "install build check test smoke deb", to run a subset),
# ARM_SKIP_TESTS=1, ARM_SMOKE=skip|auto|require (default auto: skipped when
# the daemon has no --demo), ARM_DEB=0 (no .debs), NICE (default 10: the build
# shares the machine), ARM_TOOLS_DIR (where zig goes; default
# ~/.cache/edgegate-arm), ARM_QEMU_WAIT (seconds to wait for the demo and for
# each session under qemu; default 120).
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC_FLOOR="${GLIBC_FLOOR:-2.28}"
ARM_TARGETS="${ARM_TARGETS:-armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu}"
ARM_SMOKE="${ARM_SMOKE:-auto}"
ARM_QEMU_WAIT="${ARM_QEMU_WAIT:-120}"
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
MAX_ARMV7_DAEMON_BYTES=$((8 * 1024 * 1024))
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_DEB_VERSION=3.8.0
ZIG_DIR="${ARM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgegate-arm}/ziglang-$ZIGLANG_VERSION"
NICE=(nice -n "${NICE:-10}")
export CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0 PIP_ROOT_USER_ACTION=ignore
# cargo-zigbuild runs `python3 -m ziglang` first: this one, whatever else
# the machine's Python has.
export PYTHONPATH="$ZIG_DIR${PYTHONPATH:+:$PYTHONPATH}"
export PATH="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin:$PATH"

T0=$SECONDS
CURRENT=""
SUMMARY=$(mktemp)
step() {
  CURRENT="$*"
  printf '\n==> %s (+%ss)\n' "$*" "$((SECONDS - T0))"
}
# Adds a line to the summary printed at the end.
note() { printf '%s\n' "$@" >>"$SUMMARY"; }
mib() { awk -v s="$1" 'BEGIN { printf "%.2f MiB", s / 1048576 }'; }

finish() {
  local rc=$?
  printf '\n==================== cross/build-arm.sh summary ====================\n'
  cat "$SUMMARY"
  rm -f "$SUMMARY"
  local t=$((SECONDS - T0))
  if [ "$rc" = 0 ]; then
    printf '\nresult: ok, total time %dm%02ds\n' $((t / 60)) $((t % 60))
  else
    printf '\nresult: FAILED in step "%s" (exit %s), after %dm%02ds\n' \
      "$CURRENT" "$rc" $((t / 60)) $((t % 60))
  fi
}
trap finish EXIT

# Debian's names for the qemu sysroot of each Rust target.
sysroot() {
  case "$1" in
    armv7-*) echo /usr/arm-linux-gnueabihf ;;
    aarch64-*) echo /usr/aarch64-linux-gnu ;;
  esac
}
runner_var() { # CARGO_TARGET_<TRIPLE>_RUNNER
  echo "CARGO_TARGET_$(echo "$1" | tr 'a-z-' 'A-Z_')_RUNNER"
}
# Installs crate $1 at version $2 unless exactly that version is installed.
cargo_tool() {
  if ! cargo install --list | grep -qx "$1 v$2:"; then
    "${NICE[@]}" cargo install --locked --quiet "$1" --version "$2"
  fi
}

install_tools() {
  step "install: qemu-user, ARM glibc runtimes, binutils (Debian)"
  local pkgs=()
  command -v qemu-arm >/dev/null && command -v qemu-aarch64 >/dev/null || pkgs+=(qemu-user)
  [ -e /usr/arm-linux-gnueabihf/lib/libc.so.6 ] || pkgs+=(libc6-armhf-cross)
  [ -e /usr/arm-linux-gnueabihf/lib/libgcc_s.so.1 ] || pkgs+=(libgcc-s1-armhf-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || pkgs+=(libc6-arm64-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libgcc_s.so.1 ] || pkgs+=(libgcc-s1-arm64-cross)
  command -v readelf >/dev/null || pkgs+=(binutils)
  command -v dpkg-deb >/dev/null || pkgs+=(dpkg)
  python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "apt-get install ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  echo "qemu: $(qemu-arm --version | head -n1)"

  step "install: zig (PyPI ziglang $ZIGLANG_VERSION) and cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
  # --target: a directory of its own, so neither PEP 668 (Debian's
  # "externally managed" Python) nor another ziglang on the machine matters.
  if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
    rm -rf "$ZIG_DIR"
    python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir \
      --target "$ZIG_DIR" "ziglang==$ZIGLANG_VERSION"
  fi
  echo "zig: $(python3 -m ziglang version) ($ZIG_DIR)"
  cargo_tool cargo-zigbuild "$CARGO_ZIGBUILD_VERSION"
  echo "cargo-zigbuild: $CARGO_ZIGBUILD_VERSION"

  step "install: rustup targets"
  # shellcheck disable=SC2086
  rustup target add $ARM_TARGETS
}

build() {
  local t s
  for t in $ARM_TARGETS; do
    step "build: release $t (glibc $GLIBC_FLOOR)"
    s=$SECONDS
    "${NICE[@]}" cargo zigbuild --locked --release --target "$t.$GLIBC_FLOOR" --bins
    echo "built $t in $((SECONDS - s))s"
    note "build: $t in $((SECONDS - s))s"
  done
}

check_binaries() {
  step "check: stripped, sizes and glibc floors"
  local t b path size floor fail=0 rows=""
  for t in $ARM_TARGETS; do
    for b in edgegated edgegate; do
      path="$TARGET_DIR/$t/release/$b"
      if readelf -S "$path" | grep -q '\.symtab'; then
        echo "error: $path is not stripped (release profile must keep strip = true)" >&2
        fail=1
      fi
      size=$(stat -c %s "$path")
      floor=$(cross/glibc-floor.sh "$path")
      rows+="$(printf '| %-30s | %-9s | %9d bytes (%s) | %-11s |' "$t" "$b" "$size" "$(mib "$size")" "$floor")"$'\n'
      cross/glibc-floor.sh --max "$GLIBC_FLOOR" "$path" >/dev/null || {
        echo "error: $path needs glibc $floor, above $GLIBC_FLOOR" >&2
        fail=1
      }
      if [ "$b" = edgegated ] && [[ "$t" == armv7-* ]] && [ "$size" -ge "$MAX_ARMV7_DAEMON_BYTES" ]; then
        echo "error: $path is $size bytes, over the 8 MB budget ($MAX_ARMV7_DAEMON_BYTES)" >&2
        fail=1
      fi
    done
  done
  {
    echo
    printf '| %-30s | %-9s | %-26s | %-11s |\n' target binary "stripped size" "glibc floor"
    printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "$(printf -- '-%.0s' {1..11})" \
      "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..13})"
    printf '%s' "$rows"
    echo "(armv7 edgegated budget: < 8 MB = $MAX_ARMV7_DAEMON_BYTES bytes; glibc floor must be <= $GLIBC_FLOOR)"
  } | tee -a "$SUMMARY"
  return "$fail"
}

# Sums "test result: ok. N passed; ..." lines of a cargo test log.
count_tests() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) {
         if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i;
         if ($(i + 1) ~ /^ignored/) g += $i } }
       END { printf "%d passed, %d failed, %d ignored", p, f, g }' "$1"
}

arm_tests() {
  local t=armv7-unknown-linux-gnueabihf s log
  step "test: proto and policy/store unit tests for $t under qemu-arm"
  s=$SECONDS
  log=$(mktemp)
  export "$(runner_var $t)=qemu-arm -L $(sysroot $t)"
  note ""
  "${NICE[@]}" cargo-zigbuild test --locked --target "$t.$GLIBC_FLOOR" -p edgegate-proto 2>&1 | tee "$log"
  note "tests under qemu-arm ($t):"
  note "  edgegate-proto (lib, tests/, doc):  $(count_tests "$log")"
  # Filters are OR-ed: every lib test whose path contains policy or store.
  "${NICE[@]}" cargo-zigbuild test --locked --target "$t.$GLIBC_FLOOR" -p edgegate --lib -- policy store 2>&1 | tee "$log"
  note "  edgegate lib, policy + store:       $(count_tests "$log")"
  rm -f "$log"
  note "  (built and run in $((SECONDS - s))s)"
}

# The smoke session. It relies on what `edgegated --demo` prints: a line
#   "  daemon: QUIC udp/ADDR  TLS tcp/ADDR  control PATH"
# and `.../edgegate connect ...` commands, first Henk's (allowed, with
# `-L PORT=plc-web` first), then Bert's (denied plc-web). Each command names
# the edgegate next to the running edgegated (here the armv7 one); the host's
# client runs it instead. A subshell, so its EXIT trap stops the demo and the
# clients whatever happens.
smoke() (
  t=armv7-unknown-linux-gnueabihf
  daemon="$TARGET_DIR/$t/release/edgegated"
  daemon_cmd=(qemu-arm -L "$(sysroot $t)" "$daemon")
  # For testing this function itself: another daemon command / client binary.
  # shellcheck disable=SC2206
  [ -z "${ARM_SMOKE_DAEMON:-}" ] || daemon_cmd=($ARM_SMOKE_DAEMON)
  step "smoke: armv7 edgegated --demo under qemu-arm, sessions from the host's client"
  if [ "$ARM_SMOKE" = skip ]; then
    echo "SKIPPED: ARM_SMOKE=skip"
    note "" "smoke: SKIPPED (ARM_SMOKE=skip)"
    return 0
  fi
  if ! timeout "$ARM_QEMU_WAIT" "${daemon_cmd[@]}" --help 2>&1 | grep -q -- '--demo'; then
    if [ "$ARM_SMOKE" = require ]; then
      echo "error: edgegated --help does not mention --demo" >&2
      return 1
    fi
    echo "SKIPPED: edgegated has no --demo yet (its --help does not mention it)"
    note "" "smoke: SKIPPED (edgegated has no --demo)"
    return 0
  fi

  client="${ARM_SMOKE_CLIENT:-$TARGET_DIR/debug/edgegate}"
  [ -n "${ARM_SMOKE_CLIENT:-}" ] || "${NICE[@]}" cargo build --locked --quiet --bin edgegate
  dir=$(mktemp -d)
  s=$SECONDS
  NO_COLOR=1 "${daemon_cmd[@]}" --demo >"$dir/demo.out" 2>"$dir/demo.err" &
  demo_pid=$!
  connect_pid=""
  # shellcheck disable=SC2154 # connect_pid is read when the trap runs
  trap 'kill $demo_pid $connect_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
  fail() {
    echo "error: $*" >&2
    sed 's/^/demo| /' "$dir/demo.out" "$dir/demo.err" >&2
    note "smoke: FAILED: $*"
    exit 1
  }

  # The demo prints everything at once, after its daemon is listening; the
  # last line says how to stop it.
  for _ in $(seq 1 $((ARM_QEMU_WAIT * 2))); do
    grep -q '^Ctrl-C stops the demo' "$dir/demo.out" && break
    kill -0 "$demo_pid" 2>/dev/null || fail "the demo exited before printing its commands"
    sleep 0.5
  done
  grep -q '^Ctrl-C stops the demo' "$dir/demo.out" \
    || fail "the demo printed no commands within ${ARM_QEMU_WAIT}s"
  up=$((SECONDS - s))
  daemon_line=$(grep -m1 '^ *daemon: QUIC udp/' "$dir/demo.out") || fail "no 'daemon: QUIC ...' line"
  quic=$(sed 's/.*QUIC udp\/\([^ ]*\).*/\1/' <<<"$daemon_line")
  tls=$(sed 's/.*TLS tcp\/\([^ ]*\).*/\1/' <<<"$daemon_line")
  mapfile -t cmds < <(grep -o 'edgegate connect .*' "$dir/demo.out")
  [ "${#cmds[@]}" -ge 2 ] || fail "expected Henk's and Bert's 'edgegate connect' commands"
  henk="${cmds[0]#edgegate }"
  bert="${cmds[1]#edgegate }"
  [[ " $henk " == *" --gateway $quic "* ]] || fail "Henk's command does not use the QUIC address $quic"
  port=$(grep -o -- '-L [0-9]*=plc-web' <<<"$henk" | head -n1 | sed 's/^-L //; s/=.*//')
  [ -n "$port" ] || fail "Henk's command forwards no local port to plc-web"
  plc=$(sed -n 's/.*PLC page http:\/\/\([^ ]*\).*/\1/p' "$dir/demo.out")
  echo "demo under qemu-arm up in ${up}s: QUIC $quic, TLS $tls, PLC page $plc"
  printed=$(grep -o '[^ ]*edgegate connect' "$dir/demo.out" | head -n1)
  note "" "smoke session: \$ ${daemon_cmd[*]} --demo  (commands printed after ${up}s)" \
    "  the demo's commands name ${printed% connect}; run with the host's $client:"

  # Runs the host's client with arguments $2, waits for `ready`, GETs / through
  # 127.0.0.1:$port; $1 names the transport in the output.
  session() {
    local name=$1 args=$2 ok=0 t1=$SECONDS
    echo "[$name] $client $args"
    # shellcheck disable=SC2086 # the demo's arguments are paths, keys and addresses: no spaces
    "$client" $args >"$dir/connect.out" 2>"$dir/connect.err" &
    connect_pid=$!
    for _ in $(seq 1 $((ARM_QEMU_WAIT * 2))); do
      if grep -qx 'ready' "$dir/connect.out"; then ok=1; break; fi
      kill -0 "$connect_pid" 2>/dev/null || break
      sleep 0.5
    done
    sed "s/^/[$name] client| /" "$dir/connect.out" "$dir/connect.err"
    if [ "$ok" != 1 ]; then
      note "  $name: no session: $(tr '\n' ' ' <"$dir/connect.out" "$dir/connect.err")"
      kill "$connect_pid" 2>/dev/null || true
      wait "$connect_pid" 2>/dev/null || true
      return 1
    fi
    note "  $name: \$ edgegate ${args%% --gateway-key *} ... (ready after $((SECONDS - t1))s)"
    while IFS= read -r l; do note "    | $l"; done <"$dir/connect.out"
    rm -f "$dir/get.out"
    if timeout "$ARM_QEMU_WAIT" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port
        printf 'GET / HTTP/1.1\r\nHost: plc\r\nConnection: close\r\n\r\n' >&3
        cat <&3" >"$dir/get.out" 2>&1 \
      && head -n1 "$dir/get.out" | grep -q '^HTTP/1.1 200 ' \
      && grep -q '<h1>Filling line PLC</h1>' "$dir/get.out"; then
      echo "[$name] GET http://127.0.0.1:$port/: $(head -n1 "$dir/get.out" | tr -d '\r'), $(grep -o '<h1>[^<]*</h1>' "$dir/get.out")"
      note "    GET http://127.0.0.1:$port/ -> $(head -n1 "$dir/get.out" | tr -d '\r'), $(grep -o '<h1>[^<]*</h1>' "$dir/get.out")"
    else
      echo "error: [$name] GET through 127.0.0.1:$port did not return the PLC page:" >&2
      sed 's/^/get| /' "$dir/get.out" >&2 || true
      sed "s/^/[$name] client| /" "$dir/connect.out" "$dir/connect.err" >&2
      note "    GET http://127.0.0.1:$port/ FAILED: $(head -c 200 "$dir/get.out" | tr '\r\n' '  ')"
      ok=0
    fi
    kill "$connect_pid" 2>/dev/null || true
    wait "$connect_pid" 2>/dev/null || true
    connect_pid=""
    [ "$ok" = 1 ]
  }

  # Henk over QUIC, as printed; then over the TLS fallback, as the demo says
  # ("add --tls and use --gateway TLS"). Both must work.
  session QUIC "$henk" || fail "Henk's session over QUIC failed"
  session TLS "${henk/--gateway $quic /--gateway $tls --tls }" || fail "Henk's session over TLS failed"

  # Bert: the demo says "-> denied: plc-web: no-grant".
  echo "[Bert] $client $bert"
  # shellcheck disable=SC2086
  if timeout "$ARM_QEMU_WAIT" "$client" $bert >"$dir/bert.out" 2>"$dir/bert.err"; then
    fail "Bert's session was not refused"
  fi
  sed 's/^/[Bert] client| /' "$dir/bert.out" "$dir/bert.err"
  grep -qx 'denied: plc-web: no-grant' "$dir/bert.err" || fail "Bert was not denied plc-web with no-grant"
  note "  Bert (QUIC): \$ edgegate ${bert%% --gateway-key *} ... (refused, as the demo says)"
  while IFS= read -r l; do note "    | $l"; done < <(cat "$dir/bert.out" "$dir/bert.err")
  note "  (smoke session took $((SECONDS - s))s)"
  echo "smoke: sessions through the armv7 daemon under qemu-arm: ok"
)

debs() {
  [ "${ARM_DEB:-1}" = 1 ] || return 0
  step "package: cargo-deb $CARGO_DEB_VERSION"
  cargo_tool cargo-deb "$CARGO_DEB_VERSION"
  local t deb depends listing f fail=0
  note "" ".debs (cargo-deb $CARGO_DEB_VERSION):"
  for t in $ARM_TARGETS; do
    deb=$(cargo deb --no-build --no-strip --target "$t" | tail -n1)
    depends=$(dpkg-deb -f "$deb" Depends)
    printf '%s: %s bytes, Architecture %s, Depends %s\n' "$deb" "$(stat -c %s "$deb")" \
      "$(dpkg-deb -f "$deb" Architecture)" "$depends"
    note "  ${deb#"$PWD/"}  $(stat -c %s "$deb") bytes ($(mib "$(stat -c %s "$deb")")), Architecture $(dpkg-deb -f "$deb" Architecture), Depends $depends"
    if [ "$depends" != "libc6 (>= $GLIBC_FLOOR)" ]; then
      echo "error: $deb depends on '$depends', expected libc6 (>= $GLIBC_FLOOR)" >&2
      fail=1
    fi
    listing=$(dpkg-deb -c "$deb")
    echo "$listing"
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
if has smoke; then CURRENT=smoke; smoke; fi
if has deb; then debs; fi
CURRENT="(none)"
