#!/usr/bin/env bash
# Build the fuzz crate and run every target (or the ones named) for TIME
# seconds each (default 30), starting from the committed seeds in seeds/.
# Exits non-zero if any target crashes; the crashing input is left in
# fuzz/artifacts/<target>/. New corpus entries go to fuzz/corpus/ (ignored).
#
#   fuzz/run.sh [TIME] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
time=${1:-30}
shift || true

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sancov passes).
# Nightly if it is installed; otherwise stable with RUSTC_BOOTSTRAP=1, which
# accepts them (stable's rust-std ships the ASan runtime, so AddressSanitizer
# stays on). FUZZ_TOOLCHAIN=stable forces the fallback, as on CI.
toolchain=()
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

# Release with debug assertions (and so overflow checks) on.
cargo "${toolchain[@]}" fuzz build --debug-assertions

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  log=$(mktemp)
  if cargo "${toolchain[@]}" fuzz run --debug-assertions "$t" "${dirs[@]}" -- \
      -max_total_time="$time" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    printf 'fuzz %-18s ok: %s execs in %ss\n' "$t" "$runs" "$time"
  else
    # The panic or sanitizer report and the input, without backtrace frames.
    grep -v -E '^ +([0-9]+: | at |#[0-9]+ )' "$log" | tail -n 40
    printf 'fuzz %-18s CRASHED (input in fuzz/artifacts/%s/)\n' "$t" "$t"
    failed+=("$t")
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
