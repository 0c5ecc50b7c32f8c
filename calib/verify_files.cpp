// verify_files.cpp: the checks of what is on disk (verify.h): `files` (config.json, the index and
// shards, recipe.yaml, calib_manifest.json, the copied tokenizer files, nothing stray) and
// `source_identity` (the manifest's source file identities equal those of --source).
#include "calib/verify_check.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "calib/artifact_writer.h"
#include "calib/calibrate.h"
#include "common/check.h"
#include "common/json_guard.h"
#include "common/fs.h"

namespace dsv4::calib::verify_detail {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

// Reads the side files and the shards. Returns false when nothing else can be checked.
bool files_check(const std::string& art_dir, const Checkpoint* art, const std::string& art_error,
                 const std::string& src_dir, Expected& e, bool recipe_ok, const std::string& recipe_error,
                 VerifyCheck& c) {
  bool fatal = false;
  try {
    const json cfg = json_parse(read_file(art_dir + "/config.json"), art_dir + "/config.json");
    if (cfg.is_object()) {
      note_ok(c);
    } else {
      note_fail(c, "config.json: not a JSON object");
      fatal = true;
    }
  } catch (const std::exception& ex) {
    note_fail(c, "config.json: " + clip(ex.what(), 200));
    fatal = true;
  }
  if (!art) {
    note_fail(c, "shards: " + clip(art_error, 300));
    fatal = true;
  } else {
    note_ok(c);
    if (!fs::exists(art_dir + "/model.safetensors.index.json")) {
      note_fail(c, "model.safetensors.index.json: missing");
    } else if (art->index_total_size() != art->tensor_bytes()) {
      note_fail(c, strfmt("model.safetensors.index.json: total_size %llu, tensors hold %llu bytes",
                          static_cast<unsigned long long>(art->index_total_size()),
                          static_cast<unsigned long long>(art->tensor_bytes())));
    } else {
      note_ok(c);
    }
    // A shard the index does not list, or an AtomicFile temporary ("<path>.tmp.<pid>"), is never
    // loaded, but it means the directory is not (only) the artifact one finished run wrote.
    const std::vector<std::string> listed = art->shard_files();
    for (const fs::directory_entry& f : fs::directory_iterator(art_dir)) {
      const std::string n = f.path().filename().string();
      const bool shard_like = n.ends_with(".safetensors") || n.find(".tmp.") != std::string::npos;
      if (shard_like && !std::count(listed.begin(), listed.end(), n)) note_fail(c, n + ": stray (not in the index)");
    }
  }
  if (recipe_ok) {
    note_ok(c);
  } else {
    note_fail(c, "recipe.yaml: " + clip(recipe_error, 300));
    fatal = true;
  }
  try {
    const std::string manifest = art_dir + "/calib_manifest.json";
    ordered_json m = json_parse<ordered_json>(read_file(manifest), manifest);
    if (!m.is_object()) throw std::runtime_error("not a JSON object");
    e.manifest = std::move(m);
    note_ok(c);
  } catch (const std::exception& ex) {
    note_fail(c, "calib_manifest.json: " + clip(ex.what(), 200));
  }
  if (recipe_ok && e.recipe.output.copy_tokenizer) {
    for (const std::string& f : tokenizer_file_names()) {
      if (!fs::exists(src_dir + "/" + f)) continue;
      if (!fs::exists(art_dir + "/" + f)) note_fail(c, f + ": missing (the source has it)");
      else if (read_file(art_dir + "/" + f) != read_file(src_dir + "/" + f)) note_fail(c, f + ": differs");
      else note_ok(c);
    }
  }
  finish(c, art ? strfmt("%zu tensors in %zu shard(s)", art->num_tensors(), art->shard_files().size())
                : std::string("the shards do not open"));
  return !fatal;
}

void source_identity_check(const Expected& e, const Checkpoint& src, VerifyCheck& c) {
  const json* recorded = nullptr;
  json rec;
  if (e.manifest && e.manifest->contains("source") && (*e.manifest)["source"].contains("files")) {
    rec = json::parse((*e.manifest)["source"]["files"].dump());
    recorded = &rec;
  }
  if (!recorded || !recorded->is_object()) {
    note_fail(c, "calib_manifest.json has no source.files");
    finish(c, "no recorded source identity");
    return;
  }
  const json actual = json::parse(checkpoint_identity(src).dump());
  for (const auto& [file, id] : actual.items()) {
    if (!recorded->contains(file)) {
      note_fail(c, file + ": in --source, not in the manifest");
    } else if ((*recorded)[file] != id) {
      note_fail(c, file + ": recorded " + json_excerpt((*recorded)[file]) + ", --source has " + json_excerpt(id));
    } else {
      note_ok(c);
    }
  }
  for (const auto& [file, id] : recorded->items()) {
    if (!actual.contains(file)) note_fail(c, file + ": in the manifest, not in --source");
  }
  finish(c, c.failed ? "the artifact was made from another source" : strfmt("%lld files match", ll(c.checked)));
}

}  // namespace dsv4::calib::verify_detail
