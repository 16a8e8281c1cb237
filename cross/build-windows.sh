#!/usr/bin/env bash
# The engineer's Windows client, cross-built here (no Windows machine):
#
#   bash cross/build-windows.sh          # build and package
#   bash cross/build-windows.sh --test   # the same, then the Wine tests
#
# As root on Debian/Ubuntu with only the Rust toolchain:
#   1. installs what it needs (after apt-get update, only what is missing):
#      gcc-mingw-w64-x86-64 (linker, and the C compiler ring needs), zip;
#      with --test also wine64 and curl; the rustup target
#      x86_64-pc-windows-gnu;
#   2. builds `edgegate.exe` in release for x86_64-pc-windows-gnu;
#   3. packages target/windows/edgegate-VERSION-x86_64-windows.zip: the
#      .exe, README.txt (packaging/windows/README.txt, the engineer's guide)
#      and LICENSE.txt, with CRLF line ends and the commit's timestamps;
#      prints the .exe's and the zip's size and the zip's SHA-256;
#   4. with --test: builds the Wine-only stand-in bcryptprimitives.dll
#      (cross/wine/bcryptprimitives.c; Debian 12's Wine 8.0 lacks the DLL
#      Rust's std imports) into target/windows/wine-test/ beside a copy of
#      the .exe (never into the zip), runs tests/windows_client.rs against
#      it (a real session under wine64 against the Linux edgegated), then
#      the library's unit tests built for Windows, under wine64.
#
# Environment: NICE (default 10: the build shares the machine),
# WINDOWS_UNIT_TESTS=0 (with --test: skip the unit tests under Wine).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
OUT="$TARGET_DIR/windows"
NICE=(nice -n "${NICE:-10}")
export CARGO_TERM_COLOR=never
# mingw links the .exe; ring's build script compiles its C and assembly
# with the mingw C compiler.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc
export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar

T0=$SECONDS
step() { printf '\n==> %s (+%ss)\n' "$*" "$((SECONDS - T0))"; }

step "tools"
need=()
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
command -v zip >/dev/null || need+=(zip)
if [ "$TEST" = 1 ]; then
  [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || need+=(wine64)
  command -v curl >/dev/null || need+=(curl)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
x86_64-w64-mingw32-gcc --version | head -n1

step "cargo build --release --target $TARGET --bin edgegate"
"${NICE[@]}" cargo build --release --locked --target "$TARGET" -p edgegate --bin edgegate
EXE="$TARGET_DIR/$TARGET/release/edgegate.exe"

step "package"
PKGID=$(cargo pkgid --locked -p edgegate)   # path+file:///…#edgegate@0.1.0 or …#0.1.0
VERSION=${PKGID##*[#@]}
NAME="edgegate-$VERSION-x86_64-windows"
STAGE="$OUT/$NAME"
ZIP="$OUT/$NAME.zip"
rm -rf "$STAGE" "$ZIP"
mkdir -p "$STAGE"
cp "$EXE" "$STAGE/edgegate.exe"
sed 's/$/\r/' packaging/windows/README.txt >"$STAGE/README.txt"
sed 's/$/\r/' LICENSE >"$STAGE/LICENSE.txt"
# The same inputs give the same zip: the commit's time on every entry, a
# fixed order, no extra attributes.
STAMP=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M.%S 2>/dev/null || date -u +%Y%m%d%H%M.%S)
TZ=UTC touch -t "$STAMP" "$STAGE" "$STAGE"/*
(cd "$OUT" && TZ=UTC zip -X -q -9 "$ZIP" "$NAME/edgegate.exe" "$NAME/README.txt" "$NAME/LICENSE.txt")
zip -sf "$ZIP"
if zip -sf "$ZIP" | grep -qi '\.dll'; then
  echo "error: a DLL in the zip" >&2
  exit 1
fi
EXE_BYTES=$(stat -c %s "$EXE")
ZIP_BYTES=$(stat -c %s "$ZIP")
SHA=$(sha256sum "$ZIP" | cut -d' ' -f1)
mib() { awk -v s="$1" 'BEGIN { printf "%.2f MiB", s / 1048576 }'; }

if [ "$TEST" = 1 ]; then
  step "Wine: the stand-in bcryptprimitives.dll beside a copy of the .exe (tests only)"
  WT="$OUT/wine-test"
  rm -rf "$WT"
  mkdir -p "$WT"
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$WT/bcryptprimitives.dll" \
    cross/wine/bcryptprimitives.c -ladvapi32
  cp "$EXE" "$WT/edgegate.exe"

  step "Wine: edgegate.exe sessions against the Linux edgegated (tests/windows_client.rs)"
  WINE_T0=$SECONDS
  EDGEGATE_REQUIRE_WINE=1 EDGEGATE_WINDOWS_EXE="$WT/edgegate.exe" \
    "${NICE[@]}" cargo test --locked --test windows_client -- --nocapture
  WINE_SECS=$((SECONDS - WINE_T0))

  if [ "${WINDOWS_UNIT_TESTS:-1}" != 0 ]; then
    step "Wine: the library's unit tests built for Windows"
    "${NICE[@]}" cargo test --locked --target "$TARGET" -p edgegate --lib --no-run
    TESTEXE=$(ls -t "$TARGET_DIR/$TARGET"/debug/deps/edgegate-*.exe | head -n1)
    cp "$WT/bcryptprimitives.dll" "$(dirname "$TESTEXE")/"
    WINE64=$(command -v wine64 || echo /usr/lib/wine/wine64)
    PFX=$(mktemp -d)
    trap 'rm -rf "$PFX"' EXIT   # a Wine prefix is ~800 MB
    WINEPREFIX="$PFX" WINEDEBUG=-all "$WINE64" wineboot --init >/dev/null 2>&1
    WINEPREFIX="$PFX" WINEDEBUG=-all "$WINE64" "$TESTEXE" --test-threads 2
  fi
fi

printf '\n==================== cross/build-windows.sh ====================\n'
printf 'edgegate.exe  %s (%s bytes)\n' "$(mib "$EXE_BYTES")" "$EXE_BYTES"
printf 'zip           %s (%s bytes)\n' "$ZIP" "$ZIP_BYTES"
printf 'zip size      %s\n' "$(mib "$ZIP_BYTES")"
printf 'zip sha256    %s\n' "$SHA"
if [ "$TEST" = 1 ]; then
  printf 'wine session test  passed in %ss\n' "$WINE_SECS"
fi
printf 'total time    %ss\n' "$((SECONDS - T0))"
