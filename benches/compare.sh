#!/usr/bin/env bash
# benches/compare.sh: edgegate side by side with direct TCP, socat and
# ssh -L (throughput, many streams, setup), with Cedar (policy decisions),
# plus revocation latency, daemon memory and bundle apply. Loopback only,
# every measurement bounded in time and bytes; prints one table at the end.
# See benches/README.md. Needs cargo; installs openssh-server, openssh-client,
# socat and python3 itself when missing (Debian/Ubuntu, as root). Run as root
# (sshd runs as a non-daemon on a loopback port with throwaway keys).
#
# Environment: BENCH_BYTES (bytes per single-stream run, default 1 GiB),
# BENCH_RUNS (runs per throughput figure, best kept, default 3),
# BENCH_SKIP_BUILD=1 (use the binaries already built), BENCH_ONLY=relay (only
# section 8, the relay, ~5 min of the total), BENCH_IDLE_SECS (seconds of
# idle router-relay traffic counted, default 310: two TLS pings; counted while
# the rest of section 8 runs), BENCH_RELAY_ROUTERS (simulated routers, default
# 1000). Section 8 makes a network namespace of its own (ip, nft).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BYTES=${BENCH_BYTES:-1073741824}
RUNS=${BENCH_RUNS:-3}
MULTI_STREAMS=64
MULTI_BYTES=$((16 << 20)) # per stream: 64 x 16 MiB = 1 GiB
IDLE_SESSIONS=1000
REVOKE_STREAMS=100
ONLY=${BENCH_ONLY:-all}
IDLE_SECS=${BENCH_IDLE_SECS:-310}
SIM_ROUTERS=${BENCH_RELAY_ROUTERS:-1000}
NS=egbench-$$
BT="$ROOT/benches/target"
START=$(date +%s)

T=$(mktemp -d /tmp/egbench.XXXXXX)
PIDS=()
cleanup() {
    local p
    if [ -n "${WATCHDOG:-}" ]; then pkill -P "$WATCHDOG" 2>/dev/null || true; kill "$WATCHDOG" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "[$(($(date +%s) - START))s] $*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }
load() { cut -d' ' -f1 /proc/loadavg; }
TABLE="$T/table"
: >"$TABLE"
# row MEASUREMENT FIGURE [COMPARISON] [VERDICT]
row() {
    printf '%-50s %-24s %-44s %-5s %s\n' "$1" "$2" "${3:-}" "${4:-}" "$(load)" >>"$TABLE"
    say "$1: $2 ${3:-} ${4:-}"
}
# pf VALUE OP TARGET -> pass|FAIL (awk arithmetic)
pf() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN{ok=(op=="<")?(a<b):(a>=b); print (a==a+0 && ok)?"pass":"FAIL"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a"}'; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# wait_line FILE PATTERN [SECONDS]: the first line of FILE matching PATTERN
wait_line() {
    local i
    for ((i = 0; i < ${3:-20} * 50; i++)); do
        if grep -q -- "$2" "$1" 2>/dev/null; then grep -m1 -- "$2" "$1"; return 0; fi
        sleep 0.02
    done
    die "timed out waiting for '$2' in $1: $(tail -3 "$1" 2>/dev/null)"
}
bg() { # bg NAME CMD...: run in the background, output in $T/NAME.out
    local name=$1; shift
    "$@" >"$T/$name.out" 2>&1 &
    PIDS+=($!)
    LAST=$!
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# result NAME: the fields of the tool's `RESULT NAME` line ("n/a"s if none,
# so a failed measurement shows in the table instead of ending the run)
result() { local l; l=$(grep -m1 "^RESULT $1 " | cut -d' ' -f3-); echo "${l:-n/a n/a n/a n/a n/a n/a}"; }
# egb ARGS: a bounded run of the loopback tool
egb() { timeout 150 "$EGB" "$@"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# --- tools, build -----------------------------------------------------------
missing=0
for tool in socat ssh /usr/sbin/sshd python3; do command -v "$tool" >/dev/null || missing=1; done
if [ "$missing" = 1 ]; then
    say "installing openssh-server openssh-client socat python3"
    command -v apt-get >/dev/null || die "missing socat/ssh/sshd/python3 and no apt-get to install them"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        openssh-server openssh-client socat python3 >/dev/null
fi
for tool in socat ssh /usr/sbin/sshd python3; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y openssh-server openssh-client socat python3)"
done
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building (release)"
    (cd "$ROOT" && cargo build --release --bins -q)
    (cd "$ROOT/benches/compare" && CARGO_TARGET_DIR="$BT" cargo build --release -q)
    [ "$ONLY" = relay ] || (cd "$ROOT/benches/cedar" && CARGO_TARGET_DIR="$BT" cargo build --release -q)
fi
EG="$ROOT/target/release/edgegate"
EGD="$ROOT/target/release/edgegated"
EGR="$ROOT/target/release/edgegate-relay"
EGB="$BT/release/egb"
CEDAR="$BT/release/edgegate-cedar-bench"
BUILT=$(date +%s)
# Whatever happens, the measurements end within eighteen minutes of the
# build (the VPN's benches/vpn.sh included), eight with BENCH_ONLY=relay (a first, cold build is longer:
# cedar-policy alone takes ~10 min on 2 cores). `&&`: the cleanup kills the
# sleep first, and that must not fire the bound.
BOUND=1080; [ "$ONLY" = relay ] && BOUND=480
( sleep "$BOUND" && { echo "compare.sh: ${BOUND}s bound reached" >&2; kill -TERM $$; } ) &
WATCHDOG=$!

# --- 4. policy decisions against Cedar (no network) --------------------------
if [ "$ONLY" = all ]; then
say "policy: edgegate decide vs cedar-policy"
timeout 240 "$CEDAR" >"$T/cedar.out" 2>&1 || die "cedar bench failed: $(tail -3 "$T/cedar.out")"
read -r AGREE SAMPLE < <(result cedar_agree <"$T/cedar.out")
read -r DMED DP99 < <(result decide_ns <"$T/cedar.out")
read -r CMED CP99 < <(result cedar_ns <"$T/cedar.out")
fi

# --- backends, keys, bundle, daemon --------------------------------------------
say "starting backends and edgegated"
bg bulk "$EGB" source 127.0.0.1:0 "$BYTES"
BULK=$(wait_line "$T/bulk.out" listening | sed 's/.*://')
bg multi "$EGB" source 127.0.0.1:0 "$MULTI_BYTES"
MULTI=$(wait_line "$T/multi.out" listening | sed 's/.*://')
bg one "$EGB" source 127.0.0.1:0 1 hold
ONE=$(wait_line "$T/one.out" listening | sed 's/.*://')

AUTH_PUB=$("$EG" keygen --out "$T/authority.key" | grep -o 'ed25519:[A-Za-z0-9+/=]*' | head -1)
"$EG" keygen --out "$T/client.key" >/dev/null
policy() { # policy SERIAL ALICE_STATUS OUT
    sed -e "s/@BULK@/$BULK/; s/@MULTI@/$MULTI/; s/@ONE@/$ONE/; s/@ALICE@/$2/" \
        "$ROOT/benches/compare/policy.toml.in" >"$T/policy-$1.toml"
    "$EG" bundle build "$T/policy-$1.toml" --device bench-1 --serial "$1" --valid-for 1d \
        --key "$T/authority.key" --out "$3" >/dev/null
}
policy 1 active "$T/b1.bundle"
policy 2 inactive "$T/b2.bundle"
policy 3 active "$T/b3.bundle"
policy 4 inactive "$T/b4.bundle"
for u in alice idler; do
    "$EG" ticket issue --user $u --device bench-1 --client-key "$T/client.key" --ttl 2h \
        --key "$T/authority.key" --out "$T/$u.ticket" >/dev/null
done
cat >"$T/edgegated.toml" <<EOF
device_id = "bench-1"
device_key = "$T/device.key"
state_dir = "$T/state"
trusted_keys = ["$AUTH_PUB"]
threshold = 1
listen_quic = "127.0.0.1:0"
listen_tls = "127.0.0.1:0"
control_socket = "$T/control.sock"
expiry_grace = "0s"

[limits]
max_sessions = 4000
max_sessions_per_user = 4000
max_streams_per_session = 256
# The idle-session figure opens 1,000 sessions from one address at once.
max_handshakes = 4096
EOF
[ -n "$AUTH_PUB" ] || die "keygen printed no public key"
DEVKEY=$("$EG" device-key --config "$T/edgegated.toml")
EDGEGATE_LOG=warn bg daemon "$EGD" --config "$T/edgegated.toml"
DPID=$LAST
QUIC=$(wait_line "$T/daemon.out" "listening quic" | awk '{print $NF}')
TLS=$(wait_line "$T/daemon.out" "listening tls" | awk '{print $NF}')
sleep 0.3
RSS_EMPTY=$(rss_kb "$DPID")
"$EG" bundle push "$T/b1.bundle" --socket "$T/control.sock" >/dev/null
sleep 0.5
RSS_IDLE=$(rss_kb "$DPID")

# connect NAME PORT SERVICE [--tls]: an `edgegate connect` forwarding PORT
connect() {
    local name=$1 port=$2 svc=$3 gw=$QUIC extra=()
    if [ "${4:-}" = --tls ]; then gw=$TLS; extra=(--tls); fi
    bg "$name" "$EG" connect --gateway "$gw" --gateway-key "$DEVKEY" --identity "$T/client.key" \
        --ticket "$T/alice.ticket" -L "127.0.0.1:$port=$svc" "${extra[@]}"
    wait_line "$T/$name.out" '^ready' >/dev/null
}

# cpu_tree PID...: CPU time (centiseconds) of the PIDs, their live descendants
# and their reaped children (utime+stime+cutime+cstime).
cpu_tree() {
    local all=("$@") i=0 kids
    while [ $i -lt ${#all[@]} ]; do
        kids=$(ps -o pid= --ppid "${all[$i]}" 2>/dev/null || true)
        for k in $kids; do all+=("$k"); done
        i=$((i + 1))
    done
    for i in "${all[@]}"; do awk '{print $14+$15+$16+$17}' "/proc/$i/stat" 2>/dev/null || true; done | awk '{s+=$1} END{print s+0}'
}
# best_pull PORT [PID...]: the best of $RUNS single-stream pulls (Gbit/s), and
# the CPU the forwarder processes PID... (with descendants) spent per GiB.
best_pull() {
    local i best=0 g port=$1 c0 c1; shift
    c0=$(cpu_tree "$@")
    for ((i = 0; i < RUNS; i++)); do
        g=$(egb pull "127.0.0.1:$port" "$BYTES" 30 | result pull | awk -v b="$BYTES" '$1==b{print $3}')
        [ -n "$g" ] || { echo "0 0"; return; }
        best=$(awk -v a="$best" -v b="$g" 'BEGIN{print (b>a)?b:a}')
    done
    c1=$(cpu_tree "$@")
    echo "$best $(awk -v c=$((c1 - c0)) -v n="$RUNS" -v b="$BYTES" 'BEGIN{printf "%.2f", c/100/(n*b/1073741824)}')"
}
# forwarded NAME CMD...: start a forwarder, wait until its port answers
wait_port() { local i; for ((i = 0; i < 500; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.02; done; die "port $1 never opened"; }

# --- 8. the relay, beside the direct path (defined here, run after 7) ---------
. "$ROOT/benches/relay.sh"

if [ "$ONLY" = all ]; then
# --- sshd ------------------------------------------------------------------------
mkdir -p "$T/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host"
ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/id"
cp "$T/ssh/id.pub" "$T/ssh/authorized_keys"
SSHP=$(free_port)
cat >"$T/ssh/sshd_config" <<EOF
Port $SSHP
ListenAddress 127.0.0.1
HostKey $T/ssh/host
PidFile $T/ssh/sshd.pid
AuthorizedKeysFile $T/ssh/authorized_keys
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com
EOF
bg sshd /usr/sbin/sshd -D -f "$T/ssh/sshd_config" -e
SSHD_PID=$LAST
wait_line "$T/sshd.out" "Server listening" >/dev/null
SSH=(ssh -F /dev/null -i "$T/ssh/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR -o ExitOnForwardFailure=yes -p "$SSHP")

# --- 1. bulk throughput, one stream ---------------------------------------------
say "throughput: $BYTES bytes per run, best of $RUNS"
read -r G_DIRECT _ < <(best_pull "$BULK")
P=$(free_port); bg socat socat "TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$BULK"
wait_port "$P"; read -r G_SOCAT C_SOCAT < <(best_pull "$P" "$LAST"); stop "$LAST"
for c in aes128-gcm@openssh.com chacha20-poly1305@openssh.com; do
    P=$(free_port); bg "ssh-$c" "${SSH[@]}" -c "$c" -N -L "$P:127.0.0.1:$BULK" root@127.0.0.1
    SP=$LAST; sleep 0.3; egb pull "127.0.0.1:$P" 1 10 >/dev/null
    read -r g cpu < <(best_pull "$P" "$SP" "$SSHD_PID")
    stop "$SP"
    case $c in aes*) G_SSH_AES=$g C_SSH_AES=$cpu ;; *) G_SSH_CHACHA=$g C_SSH_CHACHA=$cpu ;; esac
done
# The floor of any forwarder here: two plain forwarding processes in a chain
# (three loopback hops, as app -> client -> daemon -> backend) plus one AES-GCM
# pass on each side of the tunnel.
P2=$(free_port); bg socat2 socat "TCP-LISTEN:$P2,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$BULK"; S2=$LAST
wait_port "$P2"
P=$(free_port); bg socat1 socat "TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$P2"; S1=$LAST
wait_port "$P"; read -r G_CHAIN C_CHAIN < <(best_pull "$P" "$S1" "$S2"); stop "$S1"; stop "$S2"
read -r C_AEAD < <(egb aead 1073741824 | result aead)
C_FLOOR=$(awk -v c="$C_CHAIN" -v a="$C_AEAD" 'BEGIN{printf "%.2f", c + 2 * a}')
C_TARGET=$(awk -v s="$C_SSH_AES" 'BEGIN{printf "%.2f", 0.67 * s}')
P=$(free_port); connect quic "$P" bulk; CQ=$LAST
read -r G_QUIC C_QUIC < <(best_pull "$P" "$CQ" "$DPID"); stop "$CQ"
P=$(free_port); connect tls "$P" bulk --tls; CT=$LAST
read -r G_TLS C_TLS < <(best_pull "$P" "$CT" "$DPID"); stop "$CT"
SSH_BEST=$(awk -v a="$G_SSH_AES" -v b="$G_SSH_CHACHA" 'BEGIN{print (a>b)?a:b}')
row "1. direct TCP (1 stream)" "$G_DIRECT Gbit/s"
row "1. socat" "$G_SOCAT Gbit/s" "$(ratio "$G_SOCAT" "$G_DIRECT")x direct; cpu $C_SOCAT s/GiB"
row "1. ssh -L aes128-gcm" "$G_SSH_AES Gbit/s" "$(ratio "$G_SSH_AES" "$G_DIRECT")x direct; cpu $C_SSH_AES s/GiB"
row "1. ssh -L chacha20-poly1305" "$G_SSH_CHACHA Gbit/s" "$(ratio "$G_SSH_CHACHA" "$G_DIRECT")x direct; cpu $C_SSH_CHACHA s/GiB"
row "1. floor: 2 socat in a chain (no crypto)" "$G_CHAIN Gbit/s" "cpu $C_CHAIN s/GiB"
row "1. floor: one AES-128-GCM pass (ring)" "$C_AEAD CPU-s/GiB" "floor = chain + 2 passes = $C_FLOOR s/GiB"
# Targets: throughput at or above ssh -L aes128-gcm, and at most 0.67x its
# CPU seconds per GiB (1.5x its efficiency); the floor shows how far off.
for t in QUIC TLS; do
    if [ $t = QUIC ]; then g=$G_QUIC c=$C_QUIC; else g=$G_TLS c=$C_TLS; fi
    R=$(ratio "$g" "$G_SSH_AES")
    row "1. edgegate $t" "$g Gbit/s" "${R}x ssh-aes (>=1.0); $(ratio "$g" "$G_DIRECT")x direct" "$(pf "$R" '>=' 1.0)"
    row "1. edgegate $t CPU per GiB" "$c s/GiB" "$(ratio "$c" "$C_SSH_AES")x ssh (<=0.67: $C_TARGET); $(ratio "$c" "$C_FLOOR")x floor" "$(pf "$c" '<' "$(awk -v t="$C_TARGET" 'BEGIN{print t+0.005}')")"
done

# --- 2. 64 streams in one session ------------------------------------------------
say "many streams: $MULTI_STREAMS x $MULTI_BYTES bytes"
multi_row() { # multi_row LABEL PORT
    local agg mn mx tot ok
    read -r agg mn mx tot ok < <(egb multi "127.0.0.1:$2" "$MULTI_STREAMS" "$MULTI_BYTES" 60 | result multi)
    row "2. $1, $MULTI_STREAMS streams" "$agg Gbit/s aggregate" "per stream min $mn max $mx; $ok/$MULTI_STREAMS done"
}
multi_row "direct TCP" "$MULTI"
P=$(free_port); bg ssh-multi "${SSH[@]}" -c aes128-gcm@openssh.com -N -L "$P:127.0.0.1:$MULTI" root@127.0.0.1
SP=$LAST; sleep 0.3; egb pull "127.0.0.1:$P" 1 10 >/dev/null; multi_row "ssh -L aes128-gcm (1 conn)" "$P"; stop "$SP"
P=$(free_port); connect mq "$P" multi; multi_row "edgegate QUIC (1 session)" "$P"; stop "$LAST"
P=$(free_port); connect mt "$P" multi --tls; multi_row "edgegate TLS (1 session, 1 conn)" "$P"; stop "$LAST"

# --- 3. session setup -----------------------------------------------------------------
say "setup latency"
sleep 2
read -r TCP_FB TCP_CONN < <(egb firstbyte "127.0.0.1:$ONE" 50 | result firstbyte)
P=$(free_port)
read -r EQ_TOTAL EQ_READY EQ_AGAIN EQ_N < <(egb spawnfirst "$P" 15 "$EG" connect --gateway "$QUIC" \
    --gateway-key "$DEVKEY" --identity "$T/client.key" --ticket "$T/alice.ticket" -L "127.0.0.1:$P=one" | result spawnfirst)
read -r ET_TOTAL ET_READY ET_AGAIN ET_N < <(egb spawnfirst "$P" 15 "$EG" connect --gateway "$TLS" --tls \
    --gateway-key "$DEVKEY" --identity "$T/client.key" --ticket "$T/alice.ticket" -L "127.0.0.1:$P=one" | result spawnfirst)
read -r S_TOTAL S_READY S_AGAIN S_N < <(egb spawnfirst "$P" 15 "${SSH[@]}" -c aes128-gcm@openssh.com -N \
    -L "$P:127.0.0.1:$ONE" root@127.0.0.1 | result spawnfirst)
read -r LQ_NEW LQ_AGAIN < <(egb libsetup "$QUIC" "$DEVKEY" "$T/client.key" "$T/alice.ticket" one 30 quic | result libsetup)
read -r LT_NEW LT_AGAIN < <(egb libsetup "$TLS" "$DEVKEY" "$T/client.key" "$T/alice.ticket" one 30 tls | result libsetup)
row "3. plain TCP connect / first byte" "$TCP_CONN / $TCP_FB ms" "median of 50"
row "3. ssh -L: spawn to first byte" "$S_TOTAL ms" "stream on it: $S_AGAIN ms; $S_N runs"
row "3. edgegate QUIC: spawn to ready / first byte" "$EQ_READY / $EQ_TOTAL ms" "$(ratio "$EQ_TOTAL" "$S_TOTAL")x ssh; stream on it: $EQ_AGAIN ms"
row "3. edgegate TLS: spawn to ready / first byte" "$ET_READY / $ET_TOTAL ms" "$(ratio "$ET_TOTAL" "$S_TOTAL")x ssh; stream on it: $ET_AGAIN ms"
row "3. QUIC in-process: new session to 1st byte" "$LQ_NEW ms" "target < 2 ms" "$(pf "$LQ_NEW" '<' 2)"
row "3. QUIC in-process: stream on session" "$LQ_AGAIN ms" "$(ratio "$LQ_AGAIN" "$TCP_FB")x plain TCP first byte"
row "3. TLS in-process: new session to 1st byte" "$LT_NEW ms" "target < 2 ms" "$(pf "$LT_NEW" '<' 2)"
row "3. TLS in-process: stream on session" "$LT_AGAIN ms" "$(ratio "$LT_AGAIN" "$TCP_FB")x plain TCP first byte"

# --- 6. memory: 1,000 idle sessions ------------------------------------------------
say "memory: $IDLE_SESSIONS idle QUIC sessions"
sleep 1
RSS_BEFORE=$(rss_kb "$DPID")
exec 7> >(timeout 120 "$EGB" idle "$QUIC" "$DEVKEY" "$T/client.key" "$T/idler.ticket" "$IDLE_SESSIONS" >"$T/idle.out" 2>&1)
wait_line "$T/idle.out" "RESULT idle" 100 >/dev/null
sleep 1
RSS_SESS=$(rss_kb "$DPID")
read -r OPENED OPEN_SECS < <(result idle <"$T/idle.out")
exec 7>&-
PER=$(awk -v a="$RSS_SESS" -v b="$RSS_BEFORE" -v n="$OPENED" 'BEGIN{printf "%.1f", (a-b)/n}')

# --- 4. rows ----------------------------------------------------------------------
R=$(ratio "$CMED" "$DMED")
row "4. decide agreement with Cedar" "$AGREE/$SAMPLE" "" "$([ "$AGREE" = "$SAMPLE" ] && echo pass || echo FAIL)"
row "4. edgegate decide (10k users)" "med $DMED ns p99 $DP99" "target < 100 ns median" "$(pf "$DMED" '<' 100)"
row "4. cedar is_authorized (same model)" "med $CMED ns p99 $CP99" "${R}x edgegate (>=150)" "$(pf "$R" '>=' 150)"

# --- 5. revocation ----------------------------------------------------------------------
say "revocation: $REVOKE_STREAMS streams"
revoke_row() { # revoke_row LABEL BUNDLE [--tls]
    local p closed opened med max push early smed smax
    p=$(free_port); connect "rv$3" "$p" one ${3:-}
    read -r closed opened med max push early smed smax < <(egb revoke "$p" "$REVOKE_STREAMS" \
        "$EG" bundle push "$2" --socket "$T/control.sock" | result revoke)
    stop "$LAST"
    # Pass: all closed, the last within 50 ms of the acknowledgement (or of
    # the push's start, when streams close before the push returns).
    row "5. revocation, $1" "med $med max $max ms" "after ack ($early closed before); from push start med $smed max $smax; push $push ms; $closed/$opened" \
        "$([ "$closed" = "$REVOKE_STREAMS" ] && pf "$max" '<' 50 || echo FAIL)"
}
revoke_row "QUIC, 1 session" "$T/b2.bundle" ""
"$EG" bundle push "$T/b3.bundle" --socket "$T/control.sock" >/dev/null
revoke_row "TLS, 1 session" "$T/b4.bundle" --tls

# --- 6/7. memory rows; the 10,000-user bundle ------------------------------------------------
row "6. daemon RSS, no bundle" "$((RSS_EMPTY)) KiB"
row "6. daemon RSS idle, bundle loaded" "$((RSS_IDLE)) KiB" "target < 15 MB" "$(pf "$RSS_IDLE" '<' 15360)"
row "6. RSS with $OPENED idle sessions" "$RSS_SESS KiB" "from $RSS_BEFORE KiB; opened in ${OPEN_SECS}s"
row "6. per idle session" "$PER KiB" "target < 64 KiB" "$(pf "$PER" '<' 64)"
say "10,000-user bundle, in a fresh daemon"
read -r SIZE VER COMP ACC < <(egb synth "$T/b10k.bundle" "$T/authority.key" bench-1 10 | result synth)
sed -e "s#$T/state#$T/state10k#; s#$T/control.sock#$T/control10k.sock#" "$T/edgegated.toml" >"$T/edgegated10k.toml"
stop "$DPID"
EDGEGATE_LOG=warn bg daemon10k "$EGD" --config "$T/edgegated10k.toml"
DPID=$LAST
wait_line "$T/daemon10k.out" "listening tls" >/dev/null
sleep 0.3
RSS_EMPTY2=$(rss_kb "$DPID")
T0=$(date +%s%N)
"$EG" bundle push "$T/b10k.bundle" --socket "$T/control10k.sock" >/dev/null
PUSH_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
sleep 1
RSS_10K=$(rss_kb "$DPID")
row "6. daemon RSS, 10k-user bundle (fresh daemon)" "$RSS_10K KiB" "$RSS_EMPTY2 KiB before the push; target < 15 MB" "$(pf "$RSS_10K" '<' 15360)"
row "7. 10k bundle: verify / compile" "$VER / $COMP ms" "$((SIZE / 1024)) KiB envelope"
row "7. 10k bundle: accept (verify+compile+store)" "$ACC ms" "in-process, flushed"
row "7. 10k bundle: push over control socket" "$PUSH_MS ms" "CLI spawn + send + accept + swap"
fi

relay_section

# --- the VPN: benches/vpn.sh in namespaces of its own; its rows join the table ---
if [ "$ONLY" = all ] && [ "${BENCH_SKIP_VPN:-0}" != 1 ]; then
    say "vpn: benches/vpn.sh (BENCH_SKIP_VPN=1 skips it)"
    BENCH_SKIP_BUILD=1 ROWS_OUT="$TABLE" timeout 500 bash "$ROOT/benches/vpn.sh" >"$T/vpn.out" 2>&1 ||
        say "vpn.sh failed: $(tail -3 "$T/vpn.out")"
fi

END=$(date +%s)
echo
echo "edgegate benches/compare.sh  $(date -u +%FT%TZ)  $(nproc) cores  $(uname -r)  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-50s %-24s %-44s %-5s %s\n' measurement figure comparison pass load1
cat "$TABLE"
echo "runtime: $((END - START)) s (of which build $((BUILT - START)) s)"
