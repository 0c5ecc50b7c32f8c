#!/usr/bin/env bash
# forward_cpu.sh: CPU reference forward speed (tokens/s) on the tiny checkpoint and on a 1-layer
# full-width flash checkpoint (all 256 experts), for docs/PERFORMANCE.md.
#   bash bench/forward_cpu.sh BIN WORKDIR [TOKENIZER_DIR]
# BIN: the dsv4-calib binary. WORKDIR: scratch space (~10 GB for the flash checkpoint; an
# existing WORKDIR/flash1 is reused). Prints one "bench:" line per run.
set -euo pipefail
bin="${1:?usage: $0 BIN WORKDIR [TOKENIZER_DIR]}"
work="${2:?usage: $0 BIN WORKDIR [TOKENIZER_DIR]}"
tok="${3:-}"
mkdir -p "$work"
# Deterministic ids without Python: a linear congruential sequence in [3, vocab).
ids() {  # ids COUNT VOCAB
  awk -v n="$1" -v v="$2" 'BEGIN { x = 12345; printf "["; for (i = 0; i < n; ++i) { x = (x * 1103515245 + 12345) % 2147483648; printf "%s%d", (i ? ", " : ""), 3 + x % (v - 3) } print "]" }'
}
run() {  # run NAME MODEL IDS_FILE
  local start end
  start=$(date +%s.%N)
  "$bin" forward --model "$2" --ids "$3" > "$work/$1.log" 2>&1
  end=$(date +%s.%N)
  echo "bench: $1 $(grep 'forward done' "$work/$1.log" | sed 's/.*forward done: //') (process $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s incl. load)"
}
[ -f "$work/tiny/config.json" ] || "$bin" make-model --preset tiny --out "$work/tiny" > /dev/null
ids 512 512 > "$work/ids_tiny_512.json"
run tiny_512 "$work/tiny" "$work/ids_tiny_512.json"
if [ -n "$tok" ]; then
  [ -f "$work/flash1/config.json" ] || "$bin" make-model --preset flash --layers 1 --experts 256 --tokenizer "$tok" --out "$work/flash1" > /dev/null
  for n in 128 512; do
    ids "$n" 129280 > "$work/ids_flash_$n.json"
    run "flash1_$n" "$work/flash1" "$work/ids_flash_$n.json"
  done
fi
