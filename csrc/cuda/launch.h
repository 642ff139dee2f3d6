// The launch geometry of the CUDA kernels, in one table: every shape they are compiled for and the
// inputs that use it. The kernels (taylor_loss_kernel.cu) are instantiated for each row of the table
// and nothing else; the op taylorglo::cuda_launch_shape (taylor_loss_cuda.cpp) reports the row an
// input takes, so that the tests can name and reach every path. Plain C++: no CUDA headers.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>
#include <utility>

#include "../checks.h"

namespace taylorglo {
namespace cuda {

struct LaunchShape {
  const char* path;     // the name the tests use
  bool nd;              // for N-d inputs (classes strided by `inner` > 1) or for (N, C) inputs
  int64_t max_classes;  // the most classes it takes (the first row that fits is used)
  int group;            // threads per row: 1, or a multiple of 32 (warps reduce with shuffles)
  int threads;          // threads per block: rows per block = threads / group
};

constexpr int64_t kAnyClasses = std::numeric_limits<int64_t>::max();

constexpr LaunchShape kLaunchTable[] = {
    // N-d inputs: a thread per row, so that neighbouring threads read neighbouring addresses (the
    // positions of one class are contiguous), whatever C is.
    {"thread-per-row", true, kAnyClasses, 1, 256},
    // (N, C) with C <= 2048: a warp per row (shuffle reductions only), 8 rows per block.
    {"warp-per-row", false, 2048, 32, 256},
    // (N, C) with C > 2048: a 512-thread block per row (shuffles, then shared memory across warps).
    {"block-per-row", false, kAnyClasses, 512, 512},
};
constexpr int kLaunchShapes = sizeof(kLaunchTable) / sizeof(kLaunchTable[0]);

constexpr bool valid_shape(const LaunchShape& s) {
  const bool group_ok = s.group == 1 || (s.group % 32 == 0 && s.group <= 1024);
  // A group larger than a warp reduces through the block's shared memory: it must be the whole block.
  const bool block_ok = s.threads % s.group == 0 && s.threads <= 1024 && (s.group <= 32 || s.threads == s.group);
  return group_ok && block_ok && s.max_classes >= 1;
}

constexpr bool valid_table() {
  for (int i = 0; i < kLaunchShapes; ++i) {
    if (!valid_shape(kLaunchTable[i])) return false;
    for (int j = 0; j < i; ++j)  // one row per group: a kernel is compiled per group
      if (kLaunchTable[j].group == kLaunchTable[i].group) return false;
  }
  return true;
}
static_assert(valid_table(), "kLaunchTable: a group of 1 or k * 32 <= 1024 threads, whole blocks above 32, "
                             "each group once");

// Threads per block of the kernels compiled for `group` threads per row (a compile-time error if the
// table has no such group).
C10_HOST_DEVICE constexpr int block_threads(int group) {
  for (int i = 0; i < kLaunchShapes; ++i)
    if (kLaunchTable[i].group == group) return kLaunchTable[i].threads;
  return 0;
}

struct LaunchConfig {
  const LaunchShape* shape;
  int64_t blocks;
};

// The table's row for this input, and the blocks it needs.
inline LaunchConfig launch_config(const RowLayout& l) {
  const bool nd = l.inner > 1;
  for (const LaunchShape& s : kLaunchTable) {
    if (s.nd != nd || l.C > s.max_classes) continue;
    const int64_t rows_per_block = s.threads / s.group;
    const int64_t blocks = (l.rows + rows_per_block - 1) / rows_per_block;
    TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "taylorglo: too many rows for one CUDA launch: ",
                l.rows, " rows of ", l.C, " classes (", s.path, ")");
    return {&s, blocks};
  }
  TORCH_CHECK(false, "taylorglo: no CUDA launch shape for ", l.C, " classes", nd ? " (N-d input)" : "",
              "; see kLaunchTable in csrc/cuda/launch.h");
  return {nullptr, 0};  // not reached
}

// Calls f(std::integral_constant<int, group>{}) for a group the table has; any other group is an error
// (there is no kernel for it), never a fallback to another shape.
template <typename F, int... I>
void with_group_impl(int group, F&& f, std::integer_sequence<int, I...>) {
  const bool found = ((kLaunchTable[I].group == group
                           ? (f(std::integral_constant<int, kLaunchTable[I].group>{}), true)
                           : false) ||
                      ...);
  TORCH_CHECK(found, "taylorglo: no CUDA kernel is compiled for ", group,
              " threads per row; the groups of kLaunchTable (csrc/cuda/launch.h) are the only ones");
}

template <typename F>
void with_group(int group, F&& f) {
  with_group_impl(group, std::forward<F>(f), std::make_integer_sequence<int, kLaunchShapes>{});
}

}  // namespace cuda
}  // namespace taylorglo
