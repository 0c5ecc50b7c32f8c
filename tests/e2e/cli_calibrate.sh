#!/usr/bin/env bash
# cli_calibrate.sh: the main job through the real binary, as README command (1) runs it: make the
# tiny checkpoint, calibrate it with recipes/w4a16_mtp.yaml (flags overriding the recipe), verify
# the artifact, eval it against the source, dequant its modules; plus the refusals a user can hit
# (occupied --out, missing --recipe, a recipe that needs data without a dataset); the run's log
# prints the data line once and ends saying where the artifact is and what to run next.
# Run by ctest (cli_calibrate) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"

# expect_ok NAME CMD...: CMD exits 0 (its output goes to $work/NAME.log).
expect_ok() {
  local name="$1"; shift
  if "$@" >"$work/$name.log" 2>&1; then pass "$name"; else fail "$name (exit $?)"; tail -20 "$work/$name.log"; fi
}

src="$work/tiny"
out="$work/q"
expect_ok make_model "$bin" make-model --preset tiny --out "$src"
[ -s "$src/calib.jsonl" ] && pass calib_jsonl_written || fail calib_jsonl_written
expect_ok calibrate "$bin" --recipe "$root/recipes/w4a16_mtp.yaml" --model "$src" --dataset "$src/calib.jsonl" \
  --out "$out" --num-samples 8 --seq-len 32
grep -qE "\[6/6\] mtp\.0" "$work/calibrate.log" && pass progress_lines || fail progress_lines
[ "$(grep -c "calibration data:" "$work/calibrate.log")" -eq 1 ] && pass data_line_once || fail data_line_once
grep -qF "done: the artifact is $out;" "$work/calibrate.log" && pass says_where_the_artifact_is || fail says_where_the_artifact_is
grep -qF "next: dsv4-calib verify $out --source $src" "$work/calibrate.log" && pass says_what_next || fail says_what_next
grep -qE "layers\.0 .*gptq=24 fp8_reencode=4" "$work/calibrate.log" && pass layer_line_methods || fail layer_line_methods
for f in config.json recipe.yaml calib_manifest.json model.safetensors.index.json tokenizer.json progress.jsonl \
         report.html README.md; do
  [ -f "$out/$f" ] && pass "artifact_has_$f" || fail "artifact_has_$f"
done
grep -q '"num_samples": 8' "$out/calib_manifest.json" && pass manifest_records_override || fail manifest_records_override
# progress.jsonl (issue 25): a run_start, 7 phase events and a layer event per segment, a run_end.
p="$out/progress.jsonl"
[ "$(grep -c '^{"event":"layer"' "$p")" -eq 6 ] && [ "$(grep -c '^{"event":"phase"' "$p")" -eq 42 ] \
  && head -1 "$p" | grep -q '^{"event":"run_start".*"resumed":false' && tail -1 "$p" | grep -q '^{"event":"run_end"' \
  && pass progress_jsonl_events || fail progress_jsonl_events
grep '"segment":"layers.0"' "$p" | grep '^{"event":"layer"' | grep -q '"mean_rtn_rel_error":.*"expert_tokens_summary"' \
  && pass progress_layer_has_errors_and_tokens || fail progress_layer_has_errors_and_tokens
# The model card: Hugging Face front matter, the data's hash, the serve command.
head -4 "$out/README.md" | grep -qx "base_model_relation: quantized" && grep -q "^vllm serve q " "$out/README.md" \
  && grep -q "Samples hash (.*): \`[0-9a-f]\{16\}\`" "$out/README.md" && pass model_card || fail model_card
# `report OUT` writes the page again (and the card, with eval.json's numbers once it is there).
"$bin" -v 0 eval --model "$out" --reference "$src" --data "$src/calib.jsonl" --num-samples 2 --seq-len 32 --json \
  | tail -1 > "$out/eval.json"
rm "$out/report.html"
"$bin" report "$out" >/dev/null && [ -s "$out/report.html" ] && grep -q "^| [0-9.e+-]* | [0-9.e+-]* | [0-9.e+-]* | [0-9.]* |$" "$out/README.md" \
  && pass report_rewrites_page_and_card_with_eval || fail report_rewrites_page_and_card_with_eval
# Not a terminal (the log is a file): plain lines, no carriage return or escape of the live bar.
! grep -q $'[\r\033]' "$work/calibrate.log" && pass plain_lines_without_a_terminal || fail plain_lines_without_a_terminal
# On a terminal (util-linux `script` gives the run one): the bar redrawn in place under the lines.
if command -v script >/dev/null; then
  script -qec "$bin --recipe $root/recipes/w4a16_mtp.yaml --model $src --dataset $src/calib.jsonl --out $work/qtty \
    --num-samples 8 --seq-len 32" /dev/null > "$work/tty.log" 2>&1
  grep -q $'\r\033\[K\[[#.]*\] [0-6]/6 segments | ' "$work/tty.log" && grep -q "\[6/6\] mtp\.0" "$work/tty.log" \
    && pass live_bar_on_a_terminal || fail live_bar_on_a_terminal
else
  echo "info: no util-linux script here, the terminal case is not run"
fi
expect_ok verify "$bin" verify "$out" --source "$src"
expect_ok eval "$bin" eval --model "$out" --reference "$src" --data "$src/calib.jsonl" --num-samples 2 --seq-len 32 --json
grep -q '"kl_mean"' "$work/eval.log" && pass eval_reports_kl || fail eval_reports_kl
expect_ok dequant "$bin" dequant "$out" --out "$work/dequant.safetensors" --match 'experts\.0\.w1$'

# Refusals: nothing valid is overwritten, and the message says what to do.
expect_error out_occupied "holds a finished artifact" "$bin" --recipe "$root/recipes/w4a16_mtp.yaml" --model "$src" \
  --dataset "$src/calib.jsonl" --out "$out" --num-samples 8
[ -f "$out/calib_manifest.json" ] && pass occupied_out_untouched || fail occupied_out_untouched
expect_error no_arguments_usage "Usage:" "$bin"
expect_error no_recipe "pass --recipe" "$bin" -v 1
expect_error needs_data "dataset.files" "$bin" --recipe "$root/recipes/w4a16_mtp.yaml" --model "$src" --out "$work/q2"
[ ! -e "$work/q2" ] && pass needs_data_writes_nothing || fail needs_data_writes_nothing

e2e_finish
