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

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc" "$root/var/lib"
systemd-sysusers --root="$root" "$PWD/systemd/edgegate.sysusers"
grep -q '^edgegate:' "$root/etc/passwd"
systemd-tmpfiles --create --root="$root" "$PWD/systemd/edgegate.tmpfiles"
[ "$(stat -c %a "$root/var/lib/edgegate")" = 700 ]
echo "unit, sysusers and tmpfiles: ok"
