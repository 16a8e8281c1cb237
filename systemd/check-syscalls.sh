#!/usr/bin/env bash
# Checks that the daemon fits the unit's system-call filter: runs
# `edgegated --demo` under strace, opens a real session through it (QUIC and
# TLS, an HTTP fetch, a control-socket status, a bundle push that revokes the
# session), stops it with SIGTERM, and compares every system call it made
# with the unit's SystemCallFilter= sets (allowed minus denied), expanded by
# `systemd-analyze syscall-filter`. A call outside them would be EPERM under
# systemd; this machine cannot run the unit itself (PID 1 is not systemd).
#
# Usage: systemd/check-syscalls.sh [EDGEGATED] [EDGEGATE]   (default: debug builds)
set -euo pipefail
cd "$(dirname "$0")/.."
daemon=${1:-target/debug/edgegated}
client=${2:-target/debug/edgegate}
[ -x "$daemon" ] && [ -x "$client" ] || cargo build --quiet --bins
command -v strace >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null
}
command -v systemd-analyze >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

NO_COLOR=1 strace -f -qq -o "$work/trace" "$daemon" --demo >"$work/demo.out" 2>"$work/demo.err" &
tracer=$!
pids+=("$tracer")
for _ in $(seq 1 150); do grep -q '^Ctrl-C stops the demo' "$work/demo.out" && break; sleep 0.2; done
grep -q '^Ctrl-C stops the demo' "$work/demo.out" || { cat "$work/demo.err"; echo "demo did not start"; exit 1; }

henk=$(grep -A1 '^Henk' "$work/demo.out" | tail -n1 | sed "s#^ *[^ ]*edgegate #$client #")
status=$(grep -A1 '^On the router' "$work/demo.out" | tail -n1 | sed "s#^ *[^ ]*edgegate #$client #")
push=$(grep -A1 '^Revoke' "$work/demo.out" | tail -n1 | sed "s#^ *[^ ]*edgegate #$client #")
tls=$(sed -n 's/.*TLS tcp\/\([0-9.:]*\).*/\1/p' "$work/demo.out" | head -n1)
port=$(echo "$henk" | grep -o -- '-L [0-9]*=plc-web' | grep -o '[0-9]*' | head -n1)

run_session() { # $1: extra connect args; fetches the PLC page through -L
  $henk $1 >"$work/c.out" 2>"$work/c.err" &
  local c=$!
  pids+=("$c")
  for _ in $(seq 1 100); do grep -q '^ready' "$work/c.out" && break; sleep 0.1; done
  curl -fsS -m 5 "http://127.0.0.1:$port/" | grep -q "Filling line PLC" || { echo "session failed: $(cat "$work/c.out" "$work/c.err")"; exit 1; }
  kill "$c"; wait "$c" 2>/dev/null || true
}
run_session ""
henk_quic=$henk
henk=$(echo "$henk_quic" | sed -E "s#--gateway [0-9.]+:[0-9]+#--gateway $tls#")
run_session "--tls"
henk=$henk_quic
$status >/dev/null
$henk >"$work/c.out" 2>"$work/c.err" &
pids+=("$!")
for _ in $(seq 1 100); do grep -q '^ready' "$work/c.out" && break; sleep 0.1; done
$push >/dev/null
sleep 1
kill -TERM "$(pgrep -P "$tracer" -f 'edgegated' | head -n1)" 2>/dev/null || true
wait "$tracer" 2>/dev/null || true

unit=${EDGEGATE_UNIT:-systemd/edgegated.service}
NO_COLOR=1 systemd-analyze syscall-filter --no-pager 2>/dev/null >"$work/sets"
python3 - "$work/trace" "$work/sets" "$unit" <<'PY'
import re, sys
trace, sets_file, unit = sys.argv[1:]
sets, cur = {}, None
for line in open(sets_file):
    s = line.strip()
    if not line.startswith(" ") and s.startswith("@"):
        cur = s; sets[cur] = []
    elif cur and s and not s.startswith("#"):
        sets[cur].append(s)
def expand(names):
    out = set()
    for n in names:
        out |= expand(sets.get(n, [])) if n.startswith("@") else {n}
    return out
allow, deny = set(), set()
for line in open(unit):
    m = re.match(r"\s*SystemCallFilter=(~?)(.*)", line)
    if m:
        (deny if m.group(1) else allow).update(expand(m.group(2).split()))
permitted = allow - deny if allow else set()
used = set()
for line in open(trace):
    m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
    if m:
        used.add(m.group(1))
used.discard("execve")  # strace's own exec of the daemon; systemd execs it before the filter applies
bad = sorted(used - permitted)
print(f"system calls used: {len(used)}; permitted by {unit}: {len(permitted)}")
if bad:
    print("NOT permitted by the unit's filter:", " ".join(bad)); sys.exit(1)
print("every system call the daemon made is permitted by the unit's SystemCallFilter")
PY
