#!/usr/bin/env bash
# Prints the oldest glibc a dynamically linked ELF binary can run on: the
# highest GLIBC_x.y symbol version it requires (readelf works for any ELF
# architecture). Prints "static" for a binary with no glibc version needs.
#
#   cross/glibc-floor.sh BINARY            # prints e.g. 2.28
#   cross/glibc-floor.sh -v BINARY         # also lists each required version
#   cross/glibc-floor.sh --max 2.28 BINARY # exit 1 if the floor is above 2.28
set -euo pipefail

verbose=0 max=""
while [ $# -gt 1 ]; do
  case "$1" in
    -v) verbose=1; shift ;;
    --max) max="$2"; shift 2 ;;
    *) break ;;
  esac
done
bin="${1:?usage: glibc-floor.sh [-v] [--max X.Y] BINARY}"

# Version needs (.gnu.version_r) only: the versions this binary asks of libc.
versions=$(readelf --wide --version-info "$bin" \
  | sed -n 's/.*Name: GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -uV)
if [ -z "$versions" ]; then
  echo static
  exit 0
fi
if [ "$verbose" = 1 ]; then
  echo "$bin needs GLIBC_{$(echo "$versions" | paste -sd, -)}" >&2
fi
floor=$(echo "$versions" | tail -n1)
echo "$floor"
if [ -n "$max" ] && [ "$(printf '%s\n%s\n' "$floor" "$max" | sort -V | tail -n1)" != "$max" ]; then
  echo "error: $bin needs glibc $floor, above the supported floor $max" >&2
  exit 1
fi
