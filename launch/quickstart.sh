#!/usr/bin/env bash
# quickstart.sh: README command (1). Installs the dependencies, builds dsv4-calib (CPU preset),
# writes the built-in tiny DeepSeek-V4 checkpoint to runs/tiny, inspects it and runs the CPU
# reference forward on a short chat-formatted sequence. (The calibration job itself arrives with issue 6.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh
cmake --preset cpu >/dev/null
cmake --build --preset cpu -j "$(nproc)" --target dsv4-calib
bin=build/cpu/launch/dsv4-calib
if [ ! -f runs/tiny/config.json ]; then
  "$bin" make-model --preset tiny --out runs/tiny
fi
"$bin" inspect runs/tiny
echo '[0, 300, 263, 259, 301, 75, 104, 291, 114, 302, 304, 105, 262, 104, 1]' > runs/tiny_ids.json
"$bin" forward --model runs/tiny --ids runs/tiny_ids.json
