#!/usr/bin/env bash
# Runs the tests of the AVX2 forms (the param_opt replay, the rate-aware trellis's rate models,
# the TCQ) under Miri, which checks every load, store and intrinsic of their `unsafe` blocks
# for undefined behaviour. Not part of CI: it needs a nightly toolchain with the `miri`
# component (`rustup component add --toolchain nightly miri`) and takes about 12 minutes on 2 cores.
#
# Miri reports the CPU features the build enables, so `-C target-feature` selects the AVX2
# forms. It does not implement the AVX-512 intrinsics these crates use (`vcvtps2pd`, `vpermw`
# and others), nor inline assembly or `cpuid`, so the AVX-512 forms, the decoder's assembly
# flag loop and the bulk trace writer stay outside it (`--no-default-features` drops the
# assembly). See docs/fuzzing.md, "Soundness checks".
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/miri}"
export RUSTFLAGS="-C target-feature=+avx2,+bmi2,+popcnt"
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
# A few cases per proptest: Miri runs them thousands of times slower than a release build.
export PROPTEST_CASES="${PROPTEST_CASES:-4}"
miri() {
    local pkg=$1
    shift
    echo "+ cargo +nightly miri test -p $pkg -- $*"
    cargo +nightly miri test -q -p "$pkg" --no-default-features --lib -- "$@"
}
miri nnc-quant tcq::avx2
miri nnc-cabac state_rates
# `saturating_runs_agree` replays 5 × 25 600 bins on both forms: over 20 minutes under Miri.
miri nnc-cabac replay::avx2 --skip saturating_runs_agree
