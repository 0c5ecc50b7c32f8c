#!/usr/bin/env bash
# quickstart.sh: README command (1). Installs the dependencies, builds dsv4-calib (CPU preset),
# writes the built-in tiny DeepSeek-V4 checkpoint to runs/tiny and inspects it.
# (The calibration job itself is added by issue 6; until then this stops after inspect.)
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
