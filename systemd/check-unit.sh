#!/usr/bin/env bash
# Checks systemd/edgegated.service and systemd/edgegate-relay.service: `systemd-analyze security` must score 2.0
# or lower (--threshold is in tenths), and the sysusers/tmpfiles snippets must
# apply to an empty root. Installs Debian's systemd if systemd-analyze is
# missing. Run by CI; prints the full security table.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
systemd-analyze --version | head -n1

# check UNIT SYSUSERS TMPFILES USER: the unit's score and settings, and its
# sysusers/tmpfiles snippets applied to an empty root.
check() {
  local unit=$1 sysusers=$2 tmpfiles=$3 user=$4
  echo "== $unit"
  systemd-analyze security --offline=true --threshold=20 --no-pager "$unit"

  # Settings the security score does not see.
  val() { sed -n "s/^$1=//p" "$unit" | tail -n1; }
  secs() { case "$1" in *min) echo $(( ${1%min} * 60 ));; *s) echo "${1%s}";; *) echo "$1";; esac; }
  [ "$(val LimitCORE)" = 0 ] || { echo "$unit: LimitCORE=0 missing: a core dump would hold a private key" >&2; exit 1; }
  [ "$(val Restart)" = on-failure ] || [ "$(val Restart)" = always ] || { echo "$unit: Restart= must restart a crashed daemon" >&2; exit 1; }
  [ "$(val Type)" = notify ] || { echo "$unit: Type=notify missing" >&2; exit 1; }
  [ -n "$(val WatchdogSec)" ] || { echo "$unit: WatchdogSec= missing" >&2; exit 1; }
  local interval burst restart most
  interval=$(secs "$(val StartLimitIntervalSec)")
  burst=$(val StartLimitBurst)
  restart=$(secs "$(val RestartSec)")
  [ -n "$interval" ] && [ -n "$burst" ] && [ -n "$restart" ] && [ "$restart" -gt 0 ] ||
    { echo "$unit: StartLimitIntervalSec, StartLimitBurst and RestartSec must be set" >&2; exit 1; }
  # The most starts a crash loop can make in one interval must stay below the
  # burst, or systemd gives up on the unit and an attacker has bricked it.
  most=$(( interval / restart + 1 ))
  [ "$interval" = 0 ] || [ "$most" -lt "$burst" ] ||
    { echo "$unit: a crash loop makes $most starts in ${interval}s, not below StartLimitBurst=$burst" >&2; exit 1; }
  echo "LimitCORE=0, Type=notify, watchdog; restart every ${restart}s: at most $most starts per ${interval}s < burst $burst"

  local root
  root=$(mktemp -d)
  mkdir -p "$root/etc" "$root/var/lib"
  systemd-sysusers --root="$root" "$PWD/$sysusers"
  grep -q "^$user:" "$root/etc/passwd"
  systemd-tmpfiles --create --root="$root" "$PWD/$tmpfiles"
  [ "$(stat -c %a "$root/var/lib/$user")" = 700 ]
  rm -rf "$root"
  echo "$unit, sysusers and tmpfiles: ok"
}

check systemd/edgegated.service systemd/edgegate.sysusers systemd/edgegate.tmpfiles edgegate
check systemd/edgegate-relay.service systemd/edgegate-relay.sysusers systemd/edgegate-relay.tmpfiles edgegate-relay
