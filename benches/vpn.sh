#!/usr/bin/env bash
# benches/vpn.sh: the VPN's figures (issue 12) in the three-namespace
# topology of tests/vpn_netns.rs:
#
#   engineer ns (edgegate connect --vpn, its TUN; the clients)
#     wan0 10.77.1.2 = eng0 10.77.1.1   router ns (edgegated; ip_forward off)
#     lan0 192.168.77.1 = eth0 192.168.77.10   machine ns (the servers)
#
# One TCP flow through the VPN vs through --socks (same client, same
# session) vs direct (the router namespace forwarding for that row only, the
# engineer routing straight to it), over QUIC (datagrams) and TLS (frames);
# 64 parallel flows; connect and first-answer latency (TCP and a UDP
# request/answer, a new flow each); edgegated's RSS with 1,000 live VPN
# flows and per flow; time to cut 100 live flows by a revoking bundle push.
# Prints one table (rows as compare.sh's; `ROWS_OUT=FILE` also appends them
# there). Needs root (namespaces), cargo, python3, iproute2; installs
# iproute2/python3 with apt-get only if missing. Bounded: a watchdog ends it
# after BENCH_VPN_LIMIT seconds (default 480) past the build; every client
# run is under `timeout` and a byte count.
#
# Environment: BENCH_VPN_BYTES (bytes per single-flow run, default 256 MiB),
# BENCH_RUNS (runs per throughput figure, best kept, default 2),
# BENCH_SKIP_BUILD=1, BENCH_VPN_FLOWS (held flows for memory, default 1000),
# BENCH_VPN_QUICK=1 (the one-flow rows V1 only: for tuning), BENCH_BIN_DIR
# (the binaries, default target/release), BENCH_VPN_TRANSPORTS ("QUIC TLS").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BYTES=${BENCH_VPN_BYTES:-268435456}
RUNS=${BENCH_RUNS:-2}
FLOWS=${BENCH_VPN_FLOWS:-1000}
QUICK=${BENCH_VPN_QUICK:-0}
MULTI=64
MULTI_BYTES=$((4 << 20))
REVOKE=100
START=$(date +%s)
MACHINE=192.168.77.10
TOOL="$ROOT/benches/vpn/tool.py"

[ "$(id -u)" = 0 ] || { echo "vpn.sh: needs root (network namespaces)" >&2; exit 1; }
T=$(mktemp -d /tmp/egvpn.XXXXXX)
TAG=$$
NS_EN="egv-en-$TAG" NS_RT="egv-rt-$TAG" NS_MC="egv-mc-$TAG"
PIDS=()
cleanup() {
    local p
    if [ -n "${WATCHDOG:-}" ]; then pkill -P "$WATCHDOG" 2>/dev/null || true; kill "$WATCHDOG" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for n in "$NS_EN" "$NS_RT" "$NS_MC"; do
        # anything still inside (a server's threads), then the namespace
        for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "[vpn $(($(date +%s) - START))s] $*" >&2; }
die() { echo "vpn.sh: $*" >&2; exit 1; }
load() { cut -d' ' -f1 /proc/loadavg; }
TABLE="$T/table"
: >"$TABLE"
row() {
    printf '%-50s %-24s %-44s %-5s %s\n' "$1" "$2" "${3:-}" "${4:-}" "$(load)" >>"$TABLE"
    say "$1: $2 ${3:-} ${4:-}"
}
pf() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN{ok=(op=="<")?(a<b):(a>=b); print (a==a+0 && ok)?"pass":"FAIL"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a"}'; }
wait_line() {
    local i
    for ((i = 0; i < ${3:-20} * 50; i++)); do
        if grep -q -- "$2" "$1" 2>/dev/null; then grep -m1 -- "$2" "$1"; return 0; fi
        sleep 0.02
    done
    die "timed out waiting for '$2' in $1: $(tail -3 "$1" 2>/dev/null)"
}
bg() { # bg NAME NS CMD...: run in namespace NS in the background
    local name=$1 ns=$2; shift 2
    ip netns exec "$ns" "$@" >"$T/$name.out" 2>&1 &
    PIDS+=($!)
    LAST=$!
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
result() { local l; l=$(grep -m1 "^RESULT $1 " | cut -d' ' -f3-); echo "${l:-n/a n/a n/a n/a n/a n/a}"; }
# en ARGS: the tool in the engineer namespace, bounded
en() { timeout 120 ip netns exec "$NS_EN" python3 "$TOOL" "$@"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# --- tools, build ------------------------------------------------------------
if ! command -v ip >/dev/null || ! command -v python3 >/dev/null; then
    command -v apt-get >/dev/null || die "needs ip (iproute2) and python3"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 python3 >/dev/null
fi
[ -e /dev/net/tun ] || die "no /dev/net/tun"
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building (release)"
    (cd "$ROOT" && cargo build --release --bins -q)
fi
BIN=${BENCH_BIN_DIR:-$ROOT/target/release}
EG="$BIN/edgegate"
EGD="$BIN/edgegated"
BUILT=$(date +%s)
( sleep "${BENCH_VPN_LIMIT:-480}" && { echo "vpn.sh: time bound reached" >&2; kill -TERM $$; } ) &
WATCHDOG=$!

# --- namespaces -----------------------------------------------------------------
for n in "$NS_EN" "$NS_RT" "$NS_MC"; do ip netns add "$n"; ip -n "$n" link set lo up; done
link() { # link NS_A IF_A CIDR_A NS_B IF_B CIDR_B
    ip link add "egva$TAG" type veth peer name "egvb$TAG"
    ip link set "egva$TAG" netns "$1"; ip link set "egvb$TAG" netns "$4"
    ip -n "$1" link set "egva$TAG" name "$2"; ip -n "$4" link set "egvb$TAG" name "$5"
    ip -n "$1" addr add "$3" dev "$2"; ip -n "$4" addr add "$6" dev "$5"
    ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
link "$NS_RT" eng0 10.77.1.1/24 "$NS_EN" wan0 10.77.1.2/24
link "$NS_RT" lan0 192.168.77.1/24 "$NS_MC" eth0 "$MACHINE/24"
ip netns exec "$NS_RT" sysctl -q -w net.ipv4.ip_forward=0
# The machine answers the engineer's address only in the direct row.
ip -n "$NS_MC" route add default via 192.168.77.1

bg source "$NS_MC" python3 "$TOOL" source 5001
wait_line "$T/source.out" listening >/dev/null
bg udpecho "$NS_MC" python3 "$TOOL" udpecho 5002
wait_line "$T/udpecho.out" listening >/dev/null

# --- keys, bundles, daemon ---------------------------------------------------------
AUTH_PUB=$("$EG" keygen --out "$T/authority.key" | grep -o 'ed25519:[A-Za-z0-9+/=]*' | head -1)
"$EG" keygen --out "$T/client.key" >/dev/null
SERIAL=0
# policy ALICE_STATUS PORTS: the next bundle (serial) in $BUNDLE
policy() {
    SERIAL=$((SERIAL + 1))
    BUNDLE="$T/b$SERIAL.bundle"
    cat >"$T/policy-$SERIAL.toml" <<POL
[company]
id = "acme"
name = "ACME"

[[category]]
id = "vpn"
name = "VPN"

[[role]]
id = "engineer"
name = "Engineer"
scope = "company"
grants = ["vpn"]

[[user]]
id = "alice"
name = "Alice"
roles = ["engineer"]
status = "$1"

[[device]]
id = "bench-vpn"
name = "Router"
services = [
  { id = "lan", name = "Machine LAN", kind = "vpn", networks = ["192.168.77.0/24"], ports = [$2], category = "vpn" },
]
POL
    "$EG" bundle build "$T/policy-$SERIAL.toml" --device bench-vpn --serial "$SERIAL" --valid-for 1d \
        --key "$T/authority.key" --out "$BUNDLE" >/dev/null
}
push() { "$EG" bundle push "$BUNDLE" --socket "$T/control.sock" >/dev/null; }
"$EG" ticket issue --user alice --device bench-vpn --client-key "$T/client.key" --ttl 2h \
    --key "$T/authority.key" --out "$T/alice.ticket" >/dev/null
cat >"$T/edgegated.toml" <<CONF
device_id = "bench-vpn"
device_key = "$T/device.key"
state_dir = "$T/state"
trusted_keys = ["$AUTH_PUB"]
threshold = 1
listen_quic = "10.77.1.1:0"
listen_tls = "10.77.1.1:0"
control_socket = "$T/control.sock"
expiry_grace = "0s"

[limits]
max_streams_per_session = 256
# The memory figure holds $FLOWS flows in one session (up to 608 KiB each counted).
max_vpn_flows = $((FLOWS + 100))
vpn_buffer = $(((FLOWS + 100) * 622592))
CONF
DEVKEY=$("$EG" device-key --config "$T/edgegated.toml")
EDGEGATE_LOG=warn bg daemon "$NS_RT" "$EGD" --config "$T/edgegated.toml"
DPID=$LAST
QUIC=$(wait_line "$T/daemon.out" "listening quic" | awk '{print $NF}')
TLS=$(wait_line "$T/daemon.out" "listening tls" | awk '{print $NF}')
policy active "5001, 5002"
push

best_pull() { # best_pull [--socks ADDR]: best Gbit/s of $RUNS pulls of $BYTES
    local i g best=0
    for ((i = 0; i < RUNS; i++)); do
        g=$(en pull "$@" "$MACHINE" 5001 "$BYTES" 30 | result pull | awk -v b="$BYTES" '$1==b{print $3}')
        [ -n "$g" ] || { echo 0; return; }
        best=$(awk -v a="$best" -v b="$g" 'BEGIN{print (b>a)?b:a}')
    done
    echo "$best"
}

# --- direct: the router namespace forwards, for these rows only ----------------
say "direct (router forwarding)"
ip netns exec "$NS_RT" sysctl -q -w net.ipv4.ip_forward=1
ip -n "$NS_EN" route add 192.168.77.0/24 via 10.77.1.1
G_DIRECT=$(best_pull)
if [ "$QUICK" != 1 ]; then
read -r M_DIRECT M_DMIN M_DMAX _ M_DOK < <(en multi "$MACHINE" 5001 "$MULTI" "$MULTI_BYTES" 60 | result multi)
read -r C_DIRECT F_DIRECT _ < <(en connect "$MACHINE" 5001 30 | result connect)
read -r U_DIRECT _ < <(en udprtt "$MACHINE" 5002 30 | result udprtt)
fi
ip -n "$NS_EN" route del 192.168.77.0/24 via 10.77.1.1
ip netns exec "$NS_RT" sysctl -q -w net.ipv4.ip_forward=0
row "V1. direct, router forwarding (1 flow)" "$G_DIRECT Gbit/s" "kernel forwarding, no tunnel"
[ "$QUICK" = 1 ] || row "V2. direct, $MULTI flows" "$M_DIRECT Gbit/s aggregate" "per flow min $M_DMIN max $M_DMAX; $M_DOK/$MULTI done"
[ "$QUICK" = 1 ] || row "V3. direct: TCP connect / first byte" "$C_DIRECT / $F_DIRECT ms" "UDP request/answer $U_DIRECT ms; medians of 30"

# --- through edgegate, QUIC then TLS ------------------------------------------------
for t in ${BENCH_VPN_TRANSPORTS:-QUIC TLS}; do
    if [ $t = QUIC ]; then gw=$QUIC extra=(); else gw=$TLS extra=(--tls); fi
    say "$t: edgegate connect --vpn --socks"
    bg "client$t" "$NS_EN" "$EG" connect --gateway "$gw" --gateway-key "$DEVKEY" --identity "$T/client.key" \
        --ticket "$T/alice.ticket" --vpn --socks 127.0.0.1:0 "${extra[@]}"
    CPID=$LAST
    wait_line "$T/client$t.out" '^ready' 20 >/dev/null
    UP=$(grep -m1 '^vpn up:' "$T/client$t.out")
    SOCKS=$(grep -m1 '^socks ' "$T/client$t.out" | awk '{print $2}')
    say "$UP; socks $SOCKS"
    G_VPN=$(best_pull)
    G_SOCKS=$(best_pull --socks "$SOCKS")
    R=$(ratio "$G_VPN" "$G_SOCKS")
    row "V1. VPN over $t (1 flow)" "$G_VPN Gbit/s" "${R}x socks (>=0.5); $(ratio "$G_VPN" "$G_DIRECT")x direct" "$(pf "$R" '>=' 0.5)"
    row "V1. SOCKS over $t (1 flow)" "$G_SOCKS Gbit/s" "$(ratio "$G_SOCKS" "$G_DIRECT")x direct"
    if [ "$QUICK" = 1 ]; then stop "$CPID"; continue; fi
    read -r MA MMIN MMAX _ MOK < <(en multi "$MACHINE" 5001 "$MULTI" "$MULTI_BYTES" 60 | result multi)
    row "V2. VPN over $t, $MULTI flows" "$MA Gbit/s aggregate" "per flow min $MMIN max $MMAX; $MOK/$MULTI done"
    read -r MA MMIN MMAX _ MOK < <(en multi --socks "$SOCKS" "$MACHINE" 5001 "$MULTI" "$MULTI_BYTES" 60 | result multi)
    row "V2. SOCKS over $t, $MULTI flows" "$MA Gbit/s aggregate" "per flow min $MMIN max $MMAX; $MOK/$MULTI done"
    read -r CV FV _ < <(en connect "$MACHINE" 5001 30 | result connect)
    read -r CS FS _ < <(en connect --socks "$SOCKS" "$MACHINE" 5001 30 | result connect)
    read -r UV UOK UN < <(en udprtt "$MACHINE" 5002 30 | result udprtt)
    row "V3. VPN over $t: TCP connect / first byte" "$CV / $FV ms" "SOCKS $CS / $FS ms; direct $C_DIRECT / $F_DIRECT"
    row "V3. VPN over $t: UDP request/answer" "$UV ms" "new flow each; $UOK/$UN answered; direct $U_DIRECT"

    if [ $t = QUIC ]; then
        say "memory: $FLOWS held VPN flows"
        sleep 1
        RSS0=$(rss_kb "$DPID")
        exec 7> >(timeout 120 ip netns exec "$NS_EN" python3 "$TOOL" hold "$MACHINE" 5001 "$FLOWS" >"$T/hold.out" 2>&1)
        wait_line "$T/hold.out" "RESULT hold" 110 >/dev/null
        sleep 1
        RSS1=$(rss_kb "$DPID")
        read -r HELD HSECS < <(result hold <"$T/hold.out")
        exec 7>&-
        PER=$(awk -v a="$RSS1" -v b="$RSS0" -v n="$HELD" 'BEGIN{ if (n>0) printf "%.1f", (a-b)/n; else print "n/a"}')
        row "V4. edgegated RSS, $HELD live VPN flows" "$RSS1 KiB" "from $RSS0 KiB; opened in ${HSECS}s"
        row "V4. per live VPN flow" "$PER KiB" "RSS difference / flows"
        sleep 2
    fi

    # Revocation, twice: the grant loses the port (flows cut, the session
    # lives on), then the user is made inactive (the session ends).
    revoke_row() { # revoke_row LABEL (the bundle in $BUNDLE)
        local closed opened med max push rc after
        read -r closed opened med max push rc < <(en revoke "$MACHINE" 5001 "$REVOKE" \
            "$EG" bundle push "$BUNDLE" --socket "$T/control.sock" | result revoke)
        after=$(awk -v m="$max" -v p="$push" 'BEGIN{ if (m==m+0) printf "%.3f", m-p; else print "n/a"}')
        row "V5. $1, VPN over $t" "max $after ms after ack" "all $REVOKE: med $med max $max from push start; push $push ms; $closed/$opened cut" \
            "$([ "$closed" = "$REVOKE" ] && pf "$after" '<' 50 || echo FAIL)"
    }
    say "revocation: $REVOKE live flows"
    policy active "5002"
    revoke_row "grant revoked, $REVOKE flows"
    policy active "5001, 5002"
    push
    sleep 0.5
    policy inactive "5001, 5002"
    revoke_row "user inactive, $REVOKE flows"
    stop "$CPID"
    policy active "5001, 5002"
    push
done

END=$(date +%s)
[ -n "${ROWS_OUT:-}" ] && cat "$TABLE" >>"$ROWS_OUT"
echo
echo "edgegate benches/vpn.sh  $(date -u +%FT%TZ)  $(nproc) cores  $(uname -r)"
printf '%-50s %-24s %-44s %-5s %s\n' measurement figure comparison pass load1
cat "$TABLE"
echo "runtime: $((END - START)) s (of which build $((BUILT - START)) s)"
