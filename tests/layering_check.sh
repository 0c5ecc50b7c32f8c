#!/usr/bin/env bash
# layering_check.sh: rejects includes that point up or sideways in the module graph (STYLE §1):
#   common  <-  data, model, quant, dist  <-  calib  <-  launch
# The include root is shared, so CMake's link graph alone cannot stop a header from reaching up.
# Run by ctest (layering_check) as: bash tests/layering_check.sh SOURCE_DIR
set -uo pipefail
root="${1:?usage: $0 SOURCE_DIR}"
declare -A allowed=(
  [common]="common"
  [data]="common data"
  [model]="common model"
  [quant]="common quant"
  [dist]="common dist"
  [calib]="common data model quant dist calib"
  [launch]="common data model quant dist calib launch"
)
bad=0
checked=0
for module in "${!allowed[@]}"; do
  [ -d "$root/$module" ] || continue
  while IFS= read -r line; do
    file="${line%%:*}"
    target=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$line")
    checked=$((checked + 1))
    if [[ " ${allowed[$module]} " != *" $target "* ]]; then
      echo "layering: $file includes $target/ (module $module may include only: ${allowed[$module]})"
      bad=$((bad + 1))
    fi
  done < <(grep -rHE '^\s*#include "[a-z_]+/' "$root/$module" --include='*.h' --include='*.cpp' \
             --include='*.cu' --include='*.cuh' || true)
done
echo "layering: $checked project includes checked, $bad violations"
[ "$checked" -gt 0 ] && [ "$bad" -eq 0 ]
