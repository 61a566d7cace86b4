#!/usr/bin/env bash
# Coverage-guided fuzzing of Prism's parsers with libFuzzer on stable Rust (see README.md).
#
#   fuzz/run.sh TARGET|all [RUNS]     build the instrumented targets, run each for RUNS
#                                     executions (default 1000000), one after another
#   fuzz/run.sh list                  the targets
#   fuzz/run.sh seeds                 (re)write the seed corpora fuzz/corpus/ (make_seeds.rs)
#
# Environment: FUZZ_SECONDS (stop each target after this many seconds as well, default none),
# FUZZ_RSS_MB (memory limit, default 2048), FUZZ_TIMEOUT (seconds one input may take, default
# 10), CARGO_TARGET_DIR (default target/ in the repository).
#
# Prints per target: executions, seconds, coverage (libFuzzer's `cov` edges and `ft` features),
# corpus size and the outcome; exits non-zero if any target crashed, hung or ran out of memory
# (the input is saved under fuzz/artifacts/TARGET/). New inputs go to a working corpus under the
# target directory; the seeds in fuzz/corpus/TARGET are only read.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here"

targets=(onnx npy hdf5_attribution hdf5_analysis hdf5_concepts hdf5_dataset image project_yaml composite_toml
  cmsl tokens label_map viewer_api)
what="${1:-}"
runs="${2:-1000000}"
if [ "$what" = list ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
make_seeds=0
if [ "$what" = seeds ]; then make_seeds=1; selected=(); fi
if [ -z "$what" ]; then echo "usage: fuzz/run.sh TARGET|all|list [RUNS]" >&2; exit 2; fi
if [ "$what" = all ]; then selected=("${targets[@]}"); elif [ $make_seeds = 0 ]; then selected=("$what"); fi
for t in "${selected[@]+"${selected[@]}"}"; do
  [[ " ${targets[*]} " == *" $t "* ]] || { echo "unknown target '$t' (fuzz/run.sh list)" >&2; exit 2; }
done

export CARGO_INCREMENTAL=0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# Stable sanitizer-coverage (what cargo-fuzz passes on nightly, minus the nightly-only flags),
# plus debug assertions and overflow checks so that overflowing size arithmetic is a crash.
# `--target` keeps these flags off build scripts and proc macros (they would not link).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
start=$(date +%s)
bins=(--bin make_seeds)
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --target "$triple" -p prism-fuzz --features libfuzzer "${bins[@]}"
echo "fuzz build: $(( $(date +%s) - start )) s"
bin="$CARGO_TARGET_DIR/$triple/release"

if [ $make_seeds = 1 ] || [ ! -d "$here/corpus" ]; then "$bin/make_seeds"; echo "seeds written to fuzz/corpus/"; fi

# The file-reading targets write each input to a scratch file: on tmpfs that is ~5× faster.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
rss="${FUZZ_RSS_MB:-2048}"
timeout="${FUZZ_TIMEOUT:-10}"
failed=()
summary=()
for t in "${selected[@]+"${selected[@]}"}"; do
  work="$CARGO_TARGET_DIR/fuzz-corpus/$t"
  arts="$here/artifacts/$t"
  mkdir -p "$work" "$arts" "$here/corpus/$t"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  extra=()
  [ -n "${FUZZ_SECONDS:-}" ] && extra+=("-max_total_time=$FUZZ_SECONDS")
  [ -f "$here/dict/$t.dict" ] && extra+=("-dict=$here/dict/$t.dict")
  echo "== $t: $runs runs"
  set +e
  "$bin/$t" -runs="$runs" -rss_limit_mb="$rss" -malloc_limit_mb="$rss" -timeout="$timeout" \
    -print_final_stats=1 -artifact_prefix="$arts/" "${extra[@]}" \
    "$work" "$here/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  done_line="$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
  last="$(grep -E '#[0-9]+.*cov: ' "$log" | tail -1 || true)"
  cov="$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corp="$(sed -n 's/.*corp: \([0-9]*\/[0-9]*[A-Za-z]*\).*/\1/p' <<<"$last")"
  if [ $rc -eq 0 ] && [ -n "$done_line" ]; then
    outcome=ok
  else
    outcome="FAILED (exit $rc; $(grep -m1 -oE 'deadly signal|timeout|out-of-memory|panicked at [^ ]*' "$log" || echo see log))"
    failed+=("$t")
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 || true
  fi
  line="$t: executions ${execs:-?} in ${secs:-?} s, cov ${cov:-?} ft ${ft:-?}, corpus ${corp:-?}: $outcome"
  echo "$line"
  summary+=("$line")
done
[ ${#summary[@]} -eq 0 ] && exit 0
echo "== summary ($(( $(date +%s) - start )) s in all; logs in $CARGO_TARGET_DIR/fuzz-TARGET.log)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed, hung or out of memory: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
