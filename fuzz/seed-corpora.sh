#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the conformance bitstreams (run from anywhere).
# decode_unit_header, decode_stream: every bitstream (steps of sequences included).
# decode_incremental: each pair of consecutive steps of a sequence, and each single stream
# followed by itself, in the target's layout (flags byte, u16 LE length of the first stream,
# first stream, second stream); flags bit 0 = HDSP, set for the hdsp cases.
# cabac_levels, roundtrip_levels, encode_model, fl_rounds take structured input (arbitrary) and
# start from an empty corpus.
# state_bytes: a small incremental state in versions 1 and 2 of its binary form, and an FL client
# and server state.
# model_files: a selector byte (0 npy, 1 npz, 2 safetensors, 3 PyTorch) and then the file: the
# PyTorch and safetensors test fixtures of nnc-nn, a handmade .npy (C and Fortran order) and an
# .npz holding both.
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
vectors="$fuzz/../conformance/vectors"
mkdir -p "$fuzz"/corpus/{decode_unit_header,decode_stream,decode_incremental,cabac_levels,roundtrip_levels,state_bytes,model_files,encode_model,fl_rounds}

u16le() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))"; }
pair() { # flags first second > out
  local flags=$1 first=$2 second=$3 len
  len=$(stat -c %s "$first")
  [ "$len" -lt 65536 ] || return 0
  { printf "\\x$(printf %02x "$flags")"; u16le "$len"; cat "$first" "$second"; }
}

for case_dir in "$vectors"/*/; do
  name=$(basename "$case_dir")
  flags=0
  case "$name" in *hdsp*) flags=1 ;; esac
  streams=()
  if [ -f "$case_dir/bitstream.nnc" ]; then streams+=("$case_dir/bitstream.nnc"); fi
  for step in "$case_dir"/step_*/; do
    [ -f "$step/bitstream.nnc" ] && streams+=("$step/bitstream.nnc")
  done
  for i in "${!streams[@]}"; do
    s=${streams[$i]}
    cp "$s" "$fuzz/corpus/decode_unit_header/${name}_$i.nnc"
    cp "$s" "$fuzz/corpus/decode_stream/${name}_$i.nnc"
    if [ "$i" -gt 0 ]; then
      pair "$flags" "${streams[$((i - 1))]}" "$s" > "$fuzz/corpus/decode_incremental/${name}_$i.bin"
    else
      pair "$flags" "$s" "$s" > "$fuzz/corpus/decode_incremental/${name}_0.bin"
    fi
  done
done
# Streams of the block-guess cases: the reference's, and ours with the metadata that lists the
# folded batch norms (so that mutations reach the decoder's unfolding).
for s in "$fuzz"/../conformance/block_guess/*/*.nnc; do
  cp "$s" "$fuzz/corpus/decode_stream/block_guess_$(basename "$(dirname "$s")")_$(basename "$s")"
done
# Blocks with a local scaling (the decoder applies it with apply_local_scaling), and the LSA
# model's streams.
for s in "$fuzz"/../conformance/lsa/*/bitstream.nnc "$fuzz"/../conformance/lsa_model/*.nnc; do
  cp "$s" "$fuzz/corpus/decode_stream/lsa_$(basename "$(dirname "$s")")_$(basename "$s")"
done
# One tensor "w" with levels 0, 1, -2, update depth 1, HDSP history 0 1 0 and best mode 1;
# version 2 holds the levels as a byte string (length 3), version 1 as a sequence (3 elements).
printf 'nnc-state\x02\x01\x01w\x03\x00\x02\x03\x01\x00\x00\x01\x01w\x03\x00\x01\x00\x01\x01w\x01' \
  > "$fuzz/corpus/state_bytes/state_v2.bin"
printf 'nnc-state\x01\x01\x01w\x03\x00\x02\x03\x01\x00\x00\x01\x01w\x03\x00\x01\x00\x01\x01w\x01' \
  > "$fuzz/corpus/state_bytes/state_v1.bin"
# The FL codecs' states: a client (device 1, global model [1.0], empty TCA states) and a server
# (global model [1.0], one client's empty upstream state), in version 2 (a trailing None for
# the FedBNF field) and the server also in version 1.
printf 'nnc-fl-client\x02\x01\x00\x01\x04\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' \
  > "$fuzz/corpus/state_bytes/fl_client.bin"
printf 'nnc-fl-server\x02\x00\x04\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00' \
  > "$fuzz/corpus/state_bytes/fl_server.bin"
printf 'nnc-fl-server\x01\x00\x04\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00' \
  > "$fuzz/corpus/state_bytes/fl_server_v1.bin"
fixtures="$fuzz/../crates/nnc-nn/tests/fixtures"
for f in dtypes.pt nested.pth views.pt; do
  { printf '\x03'; cat "$fixtures/$f"; } > "$fuzz/corpus/model_files/$f.bin"
done
{ printf '\x02'; cat "$fixtures/handmade.safetensors"; } > "$fuzz/corpus/model_files/handmade.bin"
npy() { # fortran_order shape data: a version-1.0 .npy of little-endian float32
  local header="{'descr': '<f4', 'fortran_order': $1, 'shape': $2, }"
  while [ $(( (10 + ${#header} + 1) % 64 )) -ne 0 ]; do header="$header "; done
  printf '\x93NUMPY\x01\x00'; u16le $(( ${#header} + 1 )); printf '%s\n' "$header"; printf "$3"
}
six='\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40\x00\x00\xa0\x40\x00\x00\xc0\x40'
tmp=$(mktemp -d)
npy False '(2, 3)' "$six" > "$tmp/c.npy"
npy True '(2, 3)' "$six" > "$tmp/f.npy"
{ printf '\x00'; cat "$tmp/c.npy"; } > "$fuzz/corpus/model_files/c.npy.bin"
{ printf '\x00'; cat "$tmp/f.npy"; } > "$fuzz/corpus/model_files/f.npy.bin"
python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.write(sys.argv[2], "c.npy"); z.write(sys.argv[3], "f.npy")' "$tmp/both.npz" "$tmp/c.npy" "$tmp/f.npy"
{ printf '\x01'; cat "$tmp/both.npz"; } > "$fuzz/corpus/model_files/both.npz.bin"
rm -r "$tmp"
for t in decode_unit_header decode_stream decode_incremental state_bytes model_files; do
  echo "$t: $(ls "$fuzz/corpus/$t" | wc -l) seeds"
done
