# benches/relay.sh: section 8 of benches/compare.sh, sourced by it (uses its
# helpers and variables): the relay (DESIGN §8) beside the direct path, on
# one router that both listens and is registered with a release
# `edgegate-relay`:
#   - session ready, `edgegate connect` through the relay vs --gateway
#     (QUIC and TLS; target: within 3 ms of direct);
#   - one bulk stream through the relay vs direct (target >= 0.6x);
#   - relay RSS per idle registered router with $SIM_ROUTERS simulated
#     routers (egb relayidle; target <= 32 KiB), and the time for all of
#     them to register again after the relay restarts (SIGTERM: GoingAway,
#     then the uplink's full-jitter back-off while it is down);
#   - idle router<->relay traffic per month, two real routers (one over
#     QUIC, one over TLS because UDP is dropped) in a network namespace of
#     this script, counted in packets' bytes by nft (target <= 15 MB/month).

# relay_start NAME DIR PORT [EXTRA_TOML] [NETNS]: an edgegate-relay on
# 127.0.0.1:PORT (0.0.0.0 in a namespace), trusting the bench authority;
# sets RKEY and RPID.
relay_start() {
    local name=$1 dir=$2 port=$3 extra=${4:-} ns=${5:-} listen=127.0.0.1 run=()
    if [ -n "$ns" ]; then listen=0.0.0.0; run=(ip netns exec "$ns"); fi
    mkdir -p "$dir"
    cat >"$dir/relay.toml" <<EOF
relay_key = "$dir/relay.key"
state_dir = "$dir/state"
trusted_keys = ["$AUTH_PUB"]
threshold = 1
listen_quic = "$listen:$port"
listen_tls = "$listen:$port"
control_socket = "$dir/control.sock"
$extra
EOF
    EDGEGATE_LOG=warn bg "$name" "${run[@]}" "$EGR" --config "$dir/relay.toml"
    RPID=$LAST
    RKEY=$(wait_line "$T/$name.out" '^relay key' | awk '{print $NF}')
    wait_line "$T/$name.out" '^control ' >/dev/null
}

# relayed_router NAME DEVICE RELAY_ADDR RELAY_KEY LISTEN [NETNS]: an
# edgegated enrolled as DEVICE, registered with the relay (waits for it);
# LISTEN=yes also listens on loopback. Sets RTPID and RTDEV (device key).
relayed_router() {
    local name=$1 dev=$2 raddr=$3 rkey=$4 listen=$5 ns=${6:-} run=()
    [ -n "$ns" ] && run=(ip netns exec "$ns")
    {
        echo "device_id = \"$dev\""
        echo "device_key = \"$T/$name.key\""
        echo "state_dir = \"$T/$name-state\""
        echo "trusted_keys = [\"$AUTH_PUB\"]"
        echo "threshold = 1"
        if [ "$listen" = yes ]; then
            echo 'listen_quic = "127.0.0.1:0"'
            echo 'listen_tls = "127.0.0.1:0"'
        fi
        echo "control_socket = \"$T/$name.sock\""
        echo "enrollment = \"$T/$name.enroll\""
        echo "[limits]"
        echo "max_sessions = 4000"
        echo "max_sessions_per_user = 4000"
        echo "[[relay]]"
        echo "address = \"$raddr\""
        echo "key = \"$rkey\""
    } >"$T/$name.toml"
    RTDEV=$("$EG" device-key --config "$T/$name.toml")
    "$EG" device enroll --device "$dev" --device-key "$RTDEV" --key "$T/authority.key" \
        --out "$T/$name.enroll" >/dev/null
    EDGEGATE_LOG=warn,edgegate::gateway::uplink=info bg "$name" "${run[@]}" "$EGD" --config "$T/$name.toml"
    RTPID=$LAST
    wait_line "$T/$name.out" "registered with relay" 20 >/dev/null
}

# nft_bytes SET: the bytes counted by the rules commented SET (both ways).
nft_bytes() {
    ip netns exec "$NS" nft list table inet egb | awk -v c="\"$1\"" '$0 ~ c {for (i = 1; i < NF; i++) if ($i == "bytes") s += $(i + 1)} END {print s + 0}'
}

# idle_start: a relay and two routers in a namespace of this script, UDP to
# 127.0.0.2 dropped so the second router registers over TLS; nft counts
# every IP packet between them from now on (while the other measurements
# run: idle traffic does not depend on the CPU they take).
idle_start() {
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    local rport=4433
    ip netns exec "$NS" nft -f - <<EOF
table inet egb {
    chain out {
        type filter hook output priority 0;
        ip daddr 127.0.0.2 udp dport $rport drop
        ip daddr 127.0.0.1 udp dport $rport counter comment "quic"
        ip saddr 127.0.0.1 udp sport $rport counter comment "quic"
        ip daddr 127.0.0.2 tcp dport $rport counter comment "tls"
        ip saddr 127.0.0.2 tcp sport $rport counter comment "tls"
    }
}
EOF
    relay_start nsrelay "$T/nsrelay" "$rport" "" "$NS"
    relayed_router idleq idle-q "127.0.0.1:$rport" "$RKEY" no "$NS"
    relayed_router idlet idle-t "127.0.0.2:$rport" "$RKEY" no "$NS"
    grep -q "over quic" "$T/idleq.out" && grep -q "over tls" "$T/idlet.out" ||
        die "idle routers: expected one over QUIC and one over TLS: $(grep -h registered "$T"/idle?.out)"
    # Steady state: the handshakes' last acknowledgements and QUIC's path
    # MTU search are start-up, not idle traffic.
    sleep 10
    IDLE_T0=$(date +%s%N) IDLE_Q0=$(nft_bytes quic) IDLE_TLS0=$(nft_bytes tls)
}

# idle_finish: at least $IDLE_SECS after idle_start, the rows.
idle_finish() {
    local left secs name d mb q1 t1
    left=$((IDLE_SECS - ($(date +%s%N) - IDLE_T0) / 1000000000))
    if [ "$left" -gt 0 ]; then sleep "$left"; fi
    q1=$(nft_bytes quic) t1=$(nft_bytes tls)
    secs=$(awk -v n="$(($(date +%s%N) - IDLE_T0))" 'BEGIN{printf "%.1f", n / 1e9}')
    for name in QUIC TLS; do
        if [ $name = QUIC ]; then d=$((q1 - IDLE_Q0)); else d=$((t1 - IDLE_TLS0)); fi
        mb=$(awk -v b="$d" -v s="$secs" 'BEGIN{printf "%.1f", b / s * 30 * 86400 / 1e6}')
        row "8. idle router<->relay traffic, $name" "$mb MB/month" "$d bytes in ${secs}s, IP packets both ways (<=15)" "$(pf "$mb" '<' 15.05)"
    done
}

relay_section() {
    say "relay: idle traffic for ${IDLE_SECS}s meanwhile: setup, bulk, memory with $SIM_ROUTERS routers, restart"
    idle_start
    # A relay and a router that listens and is registered with it.
    local rport rq rt dq dt p name g c
    rport=$(free_port)
    relay_start relay "$T/relay" "$rport" "[limits]
accept_rate = 100000
max_handshakes = 1024"
    local relay_pid=$RPID relay_key=$RKEY
    relayed_router rrouter bench-1 "127.0.0.1:$rport" "$relay_key" yes
    local router_pid=$RTPID router_dev=$RTDEV
    "$EG" bundle push "$T/b1.bundle" --socket "$T/rrouter.sock" >/dev/null
    rq=$(wait_line "$T/rrouter.out" "listening quic" | awk '{print $NF}')
    rt=$(wait_line "$T/rrouter.out" "listening tls" | awk '{print $NF}')
    local base=(--gateway-key "$router_dev" --identity "$T/client.key" --ticket "$T/alice.ticket")
    local via_q=(--gateway "$rq") via_t=(--gateway "$rt" --tls)
    local via_rq=(--relay "127.0.0.1:$rport" --relay-key "$relay_key")
    local via_rt=(--relay "127.0.0.1:$rport" --relay-key "$relay_key" --tls)

    # Session ready: spawn to `ready` (and to the first byte), 15 runs each.
    local rows=() v r
    for v in q rq t rt; do
        local -n via="via_$v"
        p=$(free_port)
        read -r _ r _ _ < <(egb spawnfirst "$p" 15 "$EG" connect "${via[@]}" "${base[@]}" \
            -L "127.0.0.1:$p=one" | result spawnfirst)
        rows+=("$r")
        unset -n via
    done
    local d
    d=$(awk -v a="${rows[1]}" -v b="${rows[0]}" 'BEGIN{printf "%.2f", a-b}')
    row "8. ready: direct QUIC / via relay" "${rows[0]} / ${rows[1]} ms" "relay +$d ms (target <= 3)" "$(pf "$d" '<' 3.0001)"
    d=$(awk -v a="${rows[3]}" -v b="${rows[2]}" 'BEGIN{printf "%.2f", a-b}')
    row "8. ready: direct TLS / via relay (TLS)" "${rows[2]} / ${rows[3]} ms" "relay +$d ms (target <= 3)" "$(pf "$d" '<' 3.0001)"

    # One bulk stream, direct and through the relay (CPU: client, relay, router).
    local gd cd
    for v in q rq t rt; do
        local -n via="via_$v"
        p=$(free_port)
        bg "bulk-$v" "$EG" connect "${via[@]}" "${base[@]}" -L "127.0.0.1:$p=bulk"
        c=$LAST
        wait_line "$T/bulk-$v.out" '^ready' >/dev/null
        read -r g cpu < <(best_pull "$p" "$c" "$relay_pid" "$router_pid")
        stop "$c"
        unset -n via
        case $v in
            q | t) gd=$g cd=$cpu ;;
            *)
                name=QUIC; [ "$v" = rt ] && name=TLS
                row "8. bulk $name: direct / via relay" "$gd / $g Gbit/s" \
                    "$(ratio "$g" "$gd")x direct (>=0.6); cpu $cd / $cpu s/GiB" "$(pf "$(ratio "$g" "$gd")" '>=' 0.6)"
                ;;
        esac
    done

    # Memory: simulated routers register; RSS before and after.
    sleep 1
    local before after per n secs
    before=$(rss_kb "$relay_pid")
    exec 8> >(timeout 300 "$EGB" relayidle "127.0.0.1:$rport" "$relay_key" "$T/authority.key" "$SIM_ROUTERS" >"$T/relayidle.out" 2>&1)
    wait_line "$T/relayidle.out" "RESULT relayidle" 120 >/dev/null
    read -r n secs < <(result relayidle <"$T/relayidle.out")
    sleep 2
    after=$(rss_kb "$relay_pid")
    per=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN{printf "%.1f", (a-b)/n}')
    row "8. relay RSS with $n idle routers" "$after KiB" "from $before KiB; registered in ${secs}s"
    row "8. relay RSS per idle router" "$per KiB" "target <= 32 KiB" "$(pf "$per" '<' 32.05)"
    # Restart: SIGTERM (GoingAway to all), start again on the same port.
    local t0
    t0=$(date +%s%N)
    stop "$relay_pid"
    relay_start relay2 "$T/relay" "$rport" "[limits]
accept_rate = 100000
max_handshakes = 1024"
    local down=$((($(date +%s%N) - t0) / 1000000))
    wait_line "$T/relayidle.out" "RESULT reregister" 120 >/dev/null
    read -r n secs < <(result reregister <"$T/relayidle.out")
    row "8. $n routers registered again after a restart" "${secs} s" "from GoingAway; relay down ${down} ms; full-jitter back-off"
    exec 8>&-
    stop "$router_pid"
    stop "$RPID"
    idle_finish
}
