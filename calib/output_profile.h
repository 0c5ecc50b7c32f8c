// output_profile.h: the serving formats an artifact can be written in (DESIGN §3 "output
// profiles"): the same solved modules (codes, scales, dequantized weight) laid out on disk for one
// consumer. The recipe key is `output.profile`; the command line's `--profile` overrides it.
//
//   OutputProfile p = output_profile_parse("appmana-dsv4-int", "output.profile");
//   output_profile_check(recipe, plan);   // throws before any work if a module cannot be stored
//
// Profiles:
//   - vllm (compressed-tensors): every scheme quant/ supports, as compressed-tensors lays it out.
//   - appmana-dsv4-int: the AppMana Ampere vLLM fork's `dsv4_int` checkpoint
//     (../shared/reference/seed_pipelines.md §1.5, §3.5): what the release stores in MXFP4
//     becomes INT4 symmetric group 32, what it stores in FP8 becomes INT8 symmetric per channel or
//     per 128x128 block, both with BF16 scales (the main layers' attn.wo_a too, or BF16 without a
//     scale as the seed converter wrote it: output.wo_a); everything else is kept. The fork finds
//     its kernels by name, so a recipe that quantizes another set of modules, or with another
//     scheme, cannot be served by it.
//   - turboquant: turboquant-vllm's TQ-native checkpoint (seed_pipelines.md §1.4, §3.4;
//     calib/profile_turboquant.h): int symmetric group schemes of 2-4 bits stored as TurboQuant
//     codes (randomized Walsh-Hadamard rotation, Lloyd-Max codebook, norm-corrected group norms)
//     with tq_config.json; kept modules dense BF16.
// Tests: tests/calib/test_output_profile.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::calib {

enum class OutputProfile : uint8_t { kVllm, kAppmanaDsv4Int, kTurboquant };
inline constexpr OutputProfile kOutputProfiles[] = {OutputProfile::kVllm, OutputProfile::kAppmanaDsv4Int,
                                                    OutputProfile::kTurboquant};

std::string_view output_profile_name(OutputProfile p);  // "vllm", "appmana-dsv4-int", "turboquant"
std::optional<OutputProfile> output_profile_from_name(std::string_view name);
std::vector<std::string> output_profile_names();
// output_profile_from_name, else a user error naming `where` (the recipe key or the flag), the
// name given and the profiles that exist.
OutputProfile output_profile_parse(std::string_view name, std::string_view where);

// How the appmana profile picks each INT4 group's scale from the exact MXFP4 dequant (the seed's
// --expert-int4-scale-mode): absmax/7, absmax/8, or the best of 19 divisors 5.0..9.5 by squared
// error. Recipe key output.int4_scale_mode.
enum class Int4ScaleMode : uint8_t { kAbsmax7, kAbsmax8, kMse };
std::string_view int4_scale_mode_name(Int4ScaleMode m);  // "absmax7", "absmax8", "mse"

// How the appmana profile stores the main layers' attn.wo_a (recipe key output.wo_a). kInt8: as
// the fork's dsv4_int loader builds it (an INT8 linear in the recipe's INT8 mode: U8 channel or I8
// block with its BF16 .scale; the fork's tools/ampere/dsv4_complete_int8_dense.py writes the
// channel one, its "validated serving layout"); the recipe must quantize it. kBf16: the seed
// converter's BF16 without a scale, which that loader copies into its INT8 parameter unconverted
// (docs/COMPATIBILITY.md); the recipe must leave it unquantized. MTP wo_a stays BF16 either way.
enum class AppmanaWoA : uint8_t { kInt8, kBf16 };
std::string_view appmana_wo_a_name(AppmanaWoA w);  // "int8", "bf16"

}  // namespace dsv4::calib
