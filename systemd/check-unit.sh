#!/usr/bin/env bash
# Checks systemd/edgegated.service: `systemd-analyze security` must score 2.0
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

systemd-analyze security --offline=true --threshold=20 --no-pager systemd/edgegated.service

# Settings the security score does not see.
unit=systemd/edgegated.service
val() { sed -n "s/^$1=//p" "$unit" | tail -n1; }
secs() { case "$1" in *min) echo $(( ${1%min} * 60 ));; *s) echo "${1%s}";; *) echo "$1";; esac; }
[ "$(val LimitCORE)" = 0 ] || { echo "LimitCORE=0 missing: a core dump would hold the device key" >&2; exit 1; }
[ "$(val Restart)" = on-failure ] || [ "$(val Restart)" = always ] || { echo "Restart= must restart a crashed daemon" >&2; exit 1; }
interval=$(secs "$(val StartLimitIntervalSec)")
burst=$(val StartLimitBurst)
restart=$(secs "$(val RestartSec)")
[ -n "$interval" ] && [ -n "$burst" ] && [ -n "$restart" ] && [ "$restart" -gt 0 ] ||
  { echo "StartLimitIntervalSec, StartLimitBurst and RestartSec must be set" >&2; exit 1; }
# The most starts a crash loop can make in one interval must stay below the
# burst, or systemd gives up on the unit and an attacker has bricked it.
most=$(( interval / restart + 1 ))
[ "$interval" = 0 ] || [ "$most" -lt "$burst" ] ||
  { echo "a crash loop makes $most starts in ${interval}s, not below StartLimitBurst=$burst" >&2; exit 1; }
echo "LimitCORE=0; restart every ${restart}s: at most $most starts per ${interval}s < burst $burst"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc" "$root/var/lib"
systemd-sysusers --root="$root" "$PWD/systemd/edgegate.sysusers"
grep -q '^edgegate:' "$root/etc/passwd"
systemd-tmpfiles --create --root="$root" "$PWD/systemd/edgegate.tmpfiles"
[ "$(stat -c %a "$root/var/lib/edgegate")" = 700 ]
echo "unit, sysusers and tmpfiles: ok"
