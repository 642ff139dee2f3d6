// Hard-label (class-index target) CPU kernels (part of taylor_loss_kernel.h; compiled once per CPU
// capability in its namespace TAYLORGLO_CPU_NS). The arithmetic of a row is taylor_math.h's, shared
// with the CUDA kernels; here are the passes over the data, in the layouts of layouts.h:
//  - rows: the forward makes two passes over a row (its max; then exp and the power sums
//    R_m = sum_{j != t} e_j^m, the target masked out so that it never enters them), the backward one.
//  - lane tiles: the same, with a row in each lane, the classes in the loop.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "../checks.h"
#include "../taylor_math.h"
#include "layouts.h"
#include "vec_io.h"

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

inline void check_target(int64_t t, int64_t r, int64_t C, int64_t ignore_index) {
  TORCH_CHECK(t >= 0 && t < C, "taylorglo: target ", t, " at position ", r, " is out of range for ", C,
              " classes (valid: 0..", C - 1, ", or ignore_index=", ignore_index, ")");
}

// The lanes' targets as acc_t (-1 for ignored rows and unused lanes, which match no class).
template <typename acc_t>
inline Vectorized<acc_t> lane_targets(const int64_t* t_data, int64_t r0, int64_t n, int64_t C, int64_t ignore_index) {
  using Vec = Vectorized<acc_t>;
  __at_align__ acc_t tl[Vec::size()];
  for (int64_t k = 0; k < Vec::size(); ++k) {
    int64_t t = -1;
    if (k < n && t_data[r0 + k] != ignore_index) {
      t = t_data[r0 + k];
      check_target(t, r0 + k, C, ignore_index);
    }
    tl[k] = static_cast<acc_t>(t);
  }
  return Vec::loadu(tl);
}

// ------------------------------------------------------------------------------------------------
// Lane tiles

template <typename acc_t, typename Tile, typename OrderT>
void hard_forward_tile(const Tile& T, const int64_t* t_data, const acc_t* A, const acc_t* B, int64_t C,
                       int64_t ignore_index, acc_t* loss_data, const RowStats<acc_t>& st, OrderT ord) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  const int K = ord();
  const Vec tv = lane_targets<acc_t>(t_data, T.r0, T.n, C, ignore_index);
  Vec M(kNegInf);
  for (int64_t j = 0; j < C; ++j) M = at::vec::maximum(M, T.zj(j));
  std::array<Vec, kMaxOrder + 1> R;
  for (int m = 1; m <= K; ++m) R[m] = Vec(acc_t(0));
  Vec zt(acc_t(0));
  for (int64_t j = 0; j < C; ++j) {
    const Vec zj = T.zj(j);
    const Vec is_t = tv == Vec(acc_t(j));
    zt = Vec::blendv(zt, zj, is_t);
    const Vec e = Vec::blendv(vexp(zj - M), Vec(acc_t(0)), is_t);  // the target stays out of R
    Vec pw = e;
    for (int m = 1; m <= K; ++m) {
      R[m] = R[m] + pw;
      if (m < K) pw = pw * e;
    }
  }
  const HardRow<Vec> row = hard_row_finish(R, vexp(zt - M), A, B, C, ord);
  // The tile's rows are neighbours in the loss and in every statistic's column: one store each.
  // M - M is 0 where the max is finite and NaN where a logit is NaN or infinite; ignored rows get 0.
  const Vec bad = M - M, valid = tv >= Vec(acc_t(0));
  auto put = [&](acc_t* column, const Vec& v) {
    Vec::blendv(Vec(acc_t(0)), v + bad, valid).store(column + T.r0, T.n);
  };
  put(loss_data, Vec(acc_t(0)) - row.value);
  put(st.column(0), M);
  put(st.column(1), row.inv);
  put(st.column(2), row.D);
  put(st.column(3), row.Q);
  put(st.column(4), row.one_minus_pt);
}

template <typename acc_t, typename Tile, typename OrderT>
void hard_backward_tile(const Tile& T, const acc_t* go, const int64_t* t_data, const acc_t* dA, const acc_t* B,
                        const RowStats<const acc_t>& st, int64_t C, int64_t ignore_index, OrderT ord) {
  using Vec = Vectorized<acc_t>;
  const Vec tv = lane_targets<acc_t>(t_data, T.r0, T.n, C, ignore_index);
  // Unused lanes load zeros; ignored rows have zero statistics.
  const Vec M = Vec::loadu(st.column(0) + T.r0, T.n), inv = Vec::loadu(st.column(1) + T.r0, T.n);
  const Vec D = Vec::loadu(st.column(2) + T.r0, T.n), Q = Vec::loadu(st.column(3) + T.r0, T.n);
  const Vec omp = Vec::loadu(st.column(4) + T.r0, T.n);
  const Vec gscale = Vec(acc_t(0)) - Vec::loadu(go + T.r0, T.n);
  const Vec valid = tv >= Vec(acc_t(0));
  for (int64_t j = 0; j < C; ++j) {
    const Vec p = vexp(T.zj(j) - M) * inv;
    const Vec g = Vec::blendv(hard_slope(dA, ord, p, D), hard_target_slope(B, ord, p, omp, Q),
                              tv == Vec(acc_t(j)));
    const Vec out = Vec::blendv(Vec(kNaN<acc_t>), gscale * p * g, M == M);  // NaN statistics: NaN
    T.store_g(j, Vec::blendv(Vec(acc_t(0)), out, valid));                        // ignored rows: exact zeros
  }
}

// ------------------------------------------------------------------------------------------------
// Entry points: lane tiles for N-d inputs and few classes, rows otherwise.

template <typename scalar_t, typename OrderT>
void hard_forward_impl(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef, int64_t ignore_index,
                       at::Tensor& loss, at::Tensor& stats, const RowLayout& l, OrderT ord) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  const int64_t* t_data = target.data_ptr<int64_t>();
  const acc_t* A = coef.data_ptr<acc_t>();
  const acc_t* B = A + (ord() + 1);
  acc_t* loss_data = loss.data_ptr<acc_t>();
  const RowStats<acc_t> st{stats.data_ptr<acc_t>(), l.rows};
  const int64_t C = l.C;
  if (use_lanes(l, /*forward=*/true)) {
    for_each_tile<acc_t>(l, z_data, static_cast<const scalar_t*>(nullptr), static_cast<scalar_t*>(nullptr),
                         [&](const auto& T) { hard_forward_tile(T, t_data, A, B, C, ignore_index, loss_data, st, ord); });
    return;
  }
  for_each_row<acc_t>(l, 0, [&](int64_t r, acc_t*) {
    const int K = ord();
    const int64_t t = t_data[r];
    if (t == ignore_index) {
      loss_data[r] = st(0, r) = st(1, r) = st(2, r) = st(3, r) = st(4, r) = 0;
      return;
    }
    check_target(t, r, C, ignore_index);
    const scalar_t* z = z_data + r * C;
    const acc_t zmax = row_max<acc_t>(z, C);
    if (!std::isfinite(zmax)) {  // NaN or +-inf logits: NaN loss and statistics
      loss_data[r] = st(0, r) = st(1, r) = st(2, r) = st(3, r) = st(4, r) = kNaN<acc_t>;
      return;
    }
    // R_m = sum_{j != t} e_j^m, e_j = exp(z_j - zmax); the target is masked to -inf in its vector.
    std::array<Vec, kMaxOrder + 1> v;
    for (int m = 1; m <= K; ++m) v[m] = Vec(acc_t(0));
    const Vec vshift(zmax);
    for (int64_t j = 0; j < C; j += Vec::size()) {
      Vec zj = load_vec<acc_t>(z + j, C - j, kNegInf);
      if (t >= j && t < j + Vec::size())
        zj = Vec::blendv(zj, Vec(kNegInf), Vec::arange(acc_t(j), acc_t(1)) == Vec(acc_t(t)));
      const Vec e = vexp(zj - vshift);
      Vec pw = e;
      for (int m = 1; m <= K; ++m) {
        v[m] = v[m] + pw;
        if (m < K) pw = pw * e;
      }
    }
    std::array<acc_t, kMaxOrder + 1> R{};
    for (int m = 1; m <= K; ++m) R[m] = reduce_add(v[m]);
    const HardRow<acc_t> row = hard_row_finish(R, std::exp(static_cast<acc_t>(z[t]) - zmax), A, B, C, ord);
    loss_data[r] = -row.value;
    st(0, r) = zmax;
    st(1, r) = row.inv;
    st(2, r) = row.D;
    st(3, r) = row.Q;
    st(4, r) = row.one_minus_pt;
  });
}

template <typename scalar_t, typename OrderT>
void hard_backward_impl(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                        const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index, at::Tensor& grad,
                        const RowLayout& l, OrderT ord) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  scalar_t* g_data = grad.data_ptr<scalar_t>();
  const int64_t* t_data = target.data_ptr<int64_t>();
  const acc_t* A = coef.data_ptr<acc_t>();
  const acc_t* B = A + (ord() + 1);
  std::array<acc_t, kMaxOrder + 1> dA;  // A' = sum_m dA_m p^m
  hard_slope_coefficients(A, ord, dA);
  const acc_t* go = grad_loss.data_ptr<acc_t>();
  const RowStats<const acc_t> st{stats.data_ptr<acc_t>(), l.rows};
  const int64_t C = l.C;
  if (use_lanes(l, /*forward=*/false)) {
    for_each_tile<acc_t>(l, z_data, static_cast<const scalar_t*>(nullptr), g_data, [&](const auto& T) {
      hard_backward_tile(T, go, t_data, dA.data(), B, st, C, ignore_index, ord);
    });
    return;
  }
  for_each_row<acc_t>(l, 0, [&](int64_t r, acc_t*) {
    const int64_t t = t_data[r];
    const scalar_t* z = z_data + r * C;
    scalar_t* out = g_data + r * C;
    if (t == ignore_index) {
      std::fill(out, out + C, scalar_t(0));
      return;
    }
    check_target(t, r, C, ignore_index);
    const acc_t zmax = st(0, r), inv = st(1, r), D = st(2, r), Q = st(3, r), omp = st(4, r);
    const acc_t gscale = -go[r];
    if (std::isnan(zmax)) {  // NaN or +-inf logits
      std::fill(out, out + C, static_cast<scalar_t>(kNaN<acc_t>));
      return;
    }
    const Vec vmax(zmax), vinv(inv), vD(D), vscale(gscale);
    map_row<acc_t>(z, static_cast<const scalar_t*>(nullptr), out, C, [&](const Vec& zj, const Vec&) {
      const Vec p = vexp(zj - vmax) * vinv;
      return vscale * p * hard_slope(dA, ord, p, vD);
    });
    // The target's gradient, from 1 - p_t as the forward saved it (see hard_target_slope).
    const acc_t pt = std::exp(static_cast<acc_t>(z[t]) - zmax) * inv;
    out[t] = static_cast<scalar_t>(gscale * pt * hard_target_slope(B, ord, pt, omp, Q));
  });
}

void hard_forward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef, int64_t ignore_index,
                  at::Tensor& loss, at::Tensor& stats, const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_hard_forward", [&] {
    dispatch_order(K, [&](auto ord) { hard_forward_impl<scalar_t>(logits, target, coef, ignore_index, loss, stats, l, ord); });
  });
}

void hard_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                   const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index, at::Tensor& grad,
                   const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_hard_backward", [&] {
    dispatch_order(K, [&](auto ord) {
      hard_backward_impl<scalar_t>(grad_loss, logits, target, coef, stats, ignore_index, grad, l, ord);
    });
  });
}

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo
