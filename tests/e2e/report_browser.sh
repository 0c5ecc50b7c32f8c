#!/usr/bin/env bash
# report_browser.sh: report.html as a person sees it (issue 25): the tiny run's report, and two
# runs compared in one page (`dsv4-calib report A B --out F`), rendered by headless Chromium
# (Debian's `chromium`, installed here when missing: about 15 s on a fresh machine). Fails on any
# console message (an error, an uncaught exception) or when the page did not draw all its plots
# (report.js writes the count into #status). With DSV4_REPORT_SCREENSHOT=FILE.png it also saves
# a screenshot of the single-run page (docs/report.png was made so).
# Run by ctest (report_browser) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work"

if ! command -v chromium >/dev/null; then
  # The test installs its browser itself (root on CI and dev machines; sudo where not root).
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get install -y --no-install-recommends chromium >"$work/apt.log" 2>&1 \
    || { $sudo_ apt-get update >>"$work/apt.log" 2>&1 && $sudo_ apt-get install -y --no-install-recommends chromium >>"$work/apt.log" 2>&1; } \
    || { fail "could not install chromium: $(tail -2 "$work/apt.log")"; e2e_finish; }
fi

"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { fail make-model; e2e_finish; }
calibrate() {  # calibrate OUT RECIPE
  "$bin" --recipe "$here/../../recipes/$2" --model "$work/tiny" --dataset "$work/tiny/calib.jsonl" --out "$1" \
    --num-samples 8 --seq-len 32 >"$1.log" 2>&1
}
calibrate "$work/gptq" w4a16_mtp.yaml && calibrate "$work/w4a16_fp8" w4a16_fp8.yaml || { fail "calibrate: $(tail -2 "$work/gptq.log" "$work/w4a16_fp8.log")"; e2e_finish; }
for f in report.html progress.jsonl README.md; do
  [ -s "$work/gptq/$f" ] && pass "the run wrote $f" || fail "the run wrote no $f"
done
"$bin" report "$work/gptq" "$work/w4a16_fp8" --out "$work/compare.html" >/dev/null 2>&1 && pass "report A B --out" || fail "report A B --out"

# render PAGE PLOTS: Chromium loads the page with the network off; no console line, PLOTS plots drawn.
render() {
  local page="$1" plots="$2" dom="$work/$(basename "$1").dom" log="$work/$(basename "$1").console"
  timeout 60 chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
    --proxy-server=127.0.0.1:9 --dump-dom "$page" >"$dom" 2>"$log"
  if grep -q ":CONSOLE" "$log"; then fail "$page: console: $(grep ':CONSOLE' "$log" | head -3)"; return; fi
  # The status element as drawn: its data-plots count, and no data-error (report.js sets it on an error).
  local status
  status=$(grep -o '<p id="status"[^>]*>[^<]*' "$dom")
  [ "$status" = "<p id=\"status\" data-plots=\"$plots\">$plots plots drawn" ] \
    && pass "$(basename "$page"): $plots plots, no console message" || fail "$page: expected $plots plots: $status"
}
render "$work/gptq/report.html" 6       # times, 2 error plots, heat map, methods, memory
render "$work/compare.html" 9           # per-run panels twice, the overlaid ones once
if [ -n "${DSV4_REPORT_SCREENSHOT:-}" ]; then
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2000 \
    --screenshot="$DSV4_REPORT_SCREENSHOT" "$work/compare.html" >/dev/null 2>&1
fi
e2e_finish
