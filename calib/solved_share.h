// solved_share.h: after the owners solve a layer, every rank needs every module's weight for pass
// B and rank 0 needs the encoded tensors for the writer (DESIGN §2 "share").
//
//   solved_share(solved, owner, comm, threads, wire);   // solved[i] filled on its owner; then on every rank
//
// One broadcast per rank (its owned modules, serialized), in rank order, so every rank issues the
// same collectives whatever it owns. The wire image leads with each module's size, so owners
// serialize and receivers deserialize the modules on `threads` threads, in place. Shared: name, method, encoded tensors and the GPTQ
// statistics; a receiver rebuilds the dequantized weight from the tensors (encoded_linear_decode,
// bit-identical to the owner's), so int4 codes travel instead of fp32 (8x fewer bytes). Codes and
// qparams stay on the owner (nothing downstream of the solve reads them).
// Tests: tests/calib/test_solved_share.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "calib/module_solve.h"
#include "dist/communicator.h"

namespace dsv4::calib {

// include_dequant = false leaves out the fp32 dequantized weight (what the writer alone needs).
std::string solved_module_serialize(const SolvedModule& m, bool include_dequant = true);
// The same bytes written at `out` (solved_module_serialized_size of them); returns their end.
size_t solved_module_serialized_size(const SolvedModule& m, bool include_dequant);
char* solved_module_serialize_to(const SolvedModule& m, bool include_dequant, char* out);
// Reads one module at `pos` and advances it; throws on a truncated or malformed blob.
SolvedModule solved_module_deserialize(std::string_view blob, size_t& pos);

// What a share moved and where its time went (the pipeline logs it per layer).
struct SolvedShareStats {
  uint64_t bytes = 0;  // broadcast, over all ranks' images
  double seconds_pack = 0, seconds_transfer = 0, seconds_unpack = 0;
};

// wire_buffer: the wire image's memory, grown as needed and kept by the caller from layer to layer.
SolvedShareStats solved_share(std::vector<SolvedModule>& solved, const std::vector<int>& owner,
                              dist::Communicator& comm, int threads, std::vector<char>& wire_buffer);

}  // namespace dsv4::calib
