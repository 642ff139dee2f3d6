// Data layouts of the CPU kernels (part of taylor_loss_kernel.h; compiled once per CPU capability in
// its namespace TAYLORGLO_CPU_NS): how the rows of an input are walked and split across threads.
//
// - rows: (N, C) inputs with many classes, one row at a time, its classes in the vector lanes.
// - lanes: a tile of n <= V neighbouring rows in the lanes of a vector, the loops running over the
//   classes. Strided tiles read N-d inputs (N, C, d1, ..., dk) in place (neighbouring rows are
//   adjacent in memory: every load and store is a contiguous run and no lane is padding, whatever C
//   is); transposed tiles copy V rows of an (N, C) input with few classes into a per-thread (C, V)
//   buffer, where the rows would otherwise fill a fraction of a vector and spend most of their time
//   in horizontal reductions.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"
#include "vec_io.h"

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

// (N, C) inputs with at most this many classes run through transposed lane tiles (measured on AVX-512
// and AVX2: rows are faster beyond).
constexpr int64_t kMaxTransposedClassesForward = 96;
constexpr int64_t kMaxTransposedClassesBackward = 8;

// Row layout: (N, C), one row at a time.

template <typename acc_t, typename F>
void for_each_row(const RowLayout& l, int64_t scratch, F&& fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(l.C, 1));
  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(static_cast<size_t>(scratch));
    for (int64_t r = begin; r < end; ++r) fn(r, buf.data());
  });
}

template <typename acc_t, typename scalar_t>
acc_t row_max(const scalar_t* z, int64_t C) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  Vec vm(kNegInf);
  for (int64_t j = 0; j < C; j += Vec::size()) vm = at::vec::maximum(vm, load_vec<acc_t>(z + j, C - j, kNegInf));
  std::array<acc_t, Vec::size()> lanes;
  vm.store(lanes.data());
  acc_t m = kNegInf;
  for (acc_t v : lanes) m = (v > m || std::isnan(v)) ? v : m;  // NaN propagates to the loss
  return m;
}

// ------------------------------------------------------------------------------------------------
// Lane layout: a tile of n <= V neighbouring rows in the lanes; class j of the tile's rows is the run
// of `width` values at z + j * stride (width = n for strided N-d input, V in a transposed buffer).

template <typename acc_t, typename scalar_t>
struct Tile {
  const scalar_t* z;
  const scalar_t* x;  // soft targets, or null
  scalar_t* g;        // gradient, or null
  int64_t stride, width;
  int64_t r0, n;     // the rows r0 .. r0 + n - 1
  acc_t* scratch;    // C * V values

  using Vec = Vectorized<acc_t>;
  inline Vec zj(int64_t j) const { return load_vec<acc_t>(z + j * stride, width, acc_t(0)); }
  inline Vec xj(int64_t j) const { return load_vec<acc_t>(x + j * stride, width, acc_t(0)); }
  inline void store_g(int64_t j, const Vec& v) const { store_vec<acc_t>(v, g + j * stride, width); }
};

// N-d input: tiles of neighbouring positions of one outer index.
template <typename acc_t, typename scalar_t, typename F>
void for_each_strided_tile(const RowLayout& l, const scalar_t* z, const scalar_t* x, scalar_t* g, F&& fn) {
  constexpr int64_t V = Vectorized<acc_t>::size();
  const int64_t tiles_per_outer = (l.inner + V - 1) / V;
  const int64_t outer = l.rows / l.inner;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(l.C * V, 1));
  at::parallel_for(0, outer * tiles_per_outer, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scratch(static_cast<size_t>(l.C * V));
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t o = tile / tiles_per_outer, i0 = (tile % tiles_per_outer) * V;
      const int64_t base = o * l.C * l.inner + i0, n = std::min(V, l.inner - i0);
      fn(Tile<acc_t, scalar_t>{z + base, x ? x + base : nullptr, g ? g + base : nullptr, l.inner, n,
                               o * l.inner + i0, n, scratch.data()});
    }
  });
}

// (N, C) input with few classes: tiles of V rows transposed into (C, V) buffers in acc_t.
template <typename acc_t, typename scalar_t, typename F>
void for_each_transposed_tile(const RowLayout& l, const scalar_t* z, const scalar_t* x, scalar_t* g, F&& fn) {
  constexpr int64_t V = Vectorized<acc_t>::size();
  const int64_t C = l.C, tiles = (l.rows + V - 1) / V;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(C * V, 1));
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    const size_t size = static_cast<size_t>(C * V);
    std::vector<acc_t> zt(size), xt(x ? size : 0), gt(g ? size : 0), scratch(size);
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = tile * V, n = std::min(V, l.rows - r0);
      for (int64_t k = 0; k < V; ++k) {
        // Lanes past the last row hold zeros (finite values; their results are discarded).
        for (int64_t j = 0; j < C; ++j) zt[j * V + k] = k < n ? static_cast<acc_t>(z[(r0 + k) * C + j]) : acc_t(0);
        if (x)
          for (int64_t j = 0; j < C; ++j) xt[j * V + k] = k < n ? static_cast<acc_t>(x[(r0 + k) * C + j]) : acc_t(0);
      }
      fn(Tile<acc_t, acc_t>{zt.data(), x ? xt.data() : nullptr, g ? gt.data() : nullptr, V, V, r0, n,
                            scratch.data()});
      if (g)
        for (int64_t k = 0; k < n; ++k)
          for (int64_t j = 0; j < C; ++j) g[(r0 + k) * C + j] = static_cast<scalar_t>(gt[j * V + k]);
    }
  });
}

// Runs fn on every tile of the input: strided when N-d, transposed when (N, C).
template <typename acc_t, typename scalar_t, typename F>
void for_each_tile(const RowLayout& l, const scalar_t* z, const scalar_t* x, scalar_t* g, F&& fn) {
  if (l.inner > 1) {
    for_each_strided_tile<acc_t>(l, z, x, g, fn);
  } else {
    for_each_transposed_tile<acc_t>(l, z, x, g, fn);
  }
}

// Forward passes reduce over each row, which costs a few horizontal reductions per row: below ~6
// vectors of classes, transposing tiles is cheaper. Backward passes have no reductions, and writing
// the gradient back from a transposed tile costs more than the partial vectors of short rows above 8.
inline bool use_lanes(const RowLayout& l, bool forward) {
  return l.inner > 1 || l.C <= (forward ? kMaxTransposedClassesForward : kMaxTransposedClassesBackward);
}

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo
