// Soft-label (probability target) CPU kernels (part of taylor_loss_kernel.h; compiled once per CPU
// capability in its namespace TAYLORGLO_CPU_NS). The polynomial f(x, p) and its derivative are
// taylor_math.h's, shared with the CUDA kernels; here are the passes over the data, in the layouts of
// layouts.h:
//  - rows: the forward keeps exp(z - max) of the row in a per-thread buffer (one exp per logit), then
//    evaluates f and g = df/dp at p = e / sum; the backward is one pass.
//  - lane tiles: the same, with a row in each lane, the classes in the loop.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../taylor_math.h"
#include "layouts.h"
#include "vec_io.h"

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

// The (K+1, K+1) power-basis coefficients c[i][m] of x^i p^m, and for the backward dc[i][m] = m c[i][m].
template <typename acc_t>
struct SoftCoef {
  const acc_t* c;
  const acc_t* dc;  // null in the forward
};

// ------------------------------------------------------------------------------------------------
// Lane tiles

template <typename acc_t, typename Tile, typename OrderT>
void soft_forward_tile(const Tile& T, const SoftCoef<acc_t>& P, OrderT ord, int64_t C, acc_t* loss_data,
                       const RowStats<acc_t>& st) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  constexpr int64_t V = Vec::size();
  Vec M(kNegInf), total(acc_t(0));
  for (int64_t j = 0; j < C; ++j) M = at::vec::maximum(M, T.zj(j));
  for (int64_t j = 0; j < C; ++j) {
    const Vec e = vexp(T.zj(j) - M);
    e.store(T.scratch + j * V);
    total = total + e;
  }
  const Vec inv = Vec(acc_t(1)) / total;
  Vec fsum(acc_t(0)), dsum(acc_t(0));
  for (int64_t j = 0; j < C; ++j) {
    const Vec p = Vec::loadu(T.scratch + j * V) * inv;
    Vec f, g;
    soft_eval(P.c, ord, T.xj(j), p, f, g);
    fsum = fsum + f;
    dsum = at::vec::fmadd(g, p, dsum);
  }
  const Vec bad = M - M;  // 0 where the max is finite, NaN where a logit is NaN or infinite
  (Vec(acc_t(0)) - fsum + bad).store(loss_data + T.r0, T.n);
  (M + bad).store(st.column(0) + T.r0, T.n);
  (inv + bad).store(st.column(1) + T.r0, T.n);
  (dsum + bad).store(st.column(2) + T.r0, T.n);
}

template <typename acc_t, typename Tile, typename OrderT>
void soft_backward_tile(const Tile& T, const SoftCoef<acc_t>& P, OrderT ord, const acc_t* go,
                        const RowStats<const acc_t>& st, int64_t C) {
  using Vec = Vectorized<acc_t>;
  const Vec M = Vec::loadu(st.column(0) + T.r0, T.n), inv = Vec::loadu(st.column(1) + T.r0, T.n);
  const Vec D = Vec::loadu(st.column(2) + T.r0, T.n), gscale = Vec(acc_t(0)) - Vec::loadu(go + T.r0, T.n);
  for (int64_t j = 0; j < C; ++j) {
    const Vec p = vexp(T.zj(j) - M) * inv;
    T.store_g(j, Vec::blendv(Vec(kNaN<acc_t>), gscale * p * (soft_derivative(P.dc, ord, T.xj(j), p) - D), M == M));
  }
}

// ------------------------------------------------------------------------------------------------
// Entry points: lane tiles for N-d inputs and few classes, rows otherwise.

template <typename scalar_t, typename OrderT>
void soft_forward_impl(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef, at::Tensor& loss,
                       at::Tensor& stats, const RowLayout& l, OrderT ord) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  constexpr int64_t V = Vec::size();
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  const scalar_t* x_data = target.data_ptr<scalar_t>();
  acc_t* loss_data = loss.data_ptr<acc_t>();
  const RowStats<acc_t> st{stats.data_ptr<acc_t>(), l.rows};
  const SoftCoef<acc_t> P{coef.data_ptr<acc_t>(), nullptr};
  const int64_t C = l.C;
  if (use_lanes(l, /*forward=*/true)) {
    for_each_tile<acc_t>(l, z_data, x_data, static_cast<scalar_t*>(nullptr),
                         [&](const auto& T) { soft_forward_tile(T, P, ord, C, loss_data, st); });
    return;
  }
  // Per row: the max; e = exp(z - max) into the buffer, and its sum; then f and g at p = e / sum.
  for_each_row<acc_t>(l, (C + V - 1) / V * V, [&](int64_t r, acc_t* ebuf) {
    const scalar_t* z = z_data + r * C;
    const scalar_t* x = x_data + r * C;
    const acc_t zmax = row_max<acc_t>(z, C);
    if (!std::isfinite(zmax)) {  // NaN or +-inf logits: NaN loss and statistics
      loss_data[r] = st(0, r) = st(1, r) = st(2, r) = kNaN<acc_t>;
      return;
    }
    const Vec vmax(zmax);
    Vec vsum(acc_t(0));
    for (int64_t j = 0; j < C; j += V) {
      const Vec e = vexp(load_vec<acc_t>(z + j, C - j, kNegInf) - vmax);  // padding: exp(-inf) = 0
      e.store(ebuf + j);
      vsum = vsum + e;
    }
    const acc_t inv_total = acc_t(1) / reduce_add(vsum);
    const Vec inv(inv_total);
    Vec vf(acc_t(0)), vd(acc_t(0));
    for (int64_t j = 0; j < C; j += V) {
      const Vec p = Vec::loadu(ebuf + j) * inv;
      Vec f, g;
      soft_eval(P.c, ord, load_vec<acc_t>(x + j, C - j, acc_t(0)), p, f, g);
      if (C - j < V) f = Vec::set(Vec(acc_t(0)), f, C - j);  // lanes past the row's end must not count (p = 0 there)
      vf = vf + f;
      vd = at::vec::fmadd(g, p, vd);
    }
    loss_data[r] = -reduce_add(vf);
    st(0, r) = zmax;
    st(1, r) = inv_total;
    st(2, r) = reduce_add(vd);
  });
}

template <typename scalar_t, typename OrderT>
void soft_backward_impl(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                        const at::Tensor& coef, const at::Tensor& stats, at::Tensor& grad, const RowLayout& l,
                        OrderT ord) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  const scalar_t* x_data = target.data_ptr<scalar_t>();
  scalar_t* g_data = grad.data_ptr<scalar_t>();
  const acc_t* go = grad_loss.data_ptr<acc_t>();
  const RowStats<const acc_t> st{stats.data_ptr<acc_t>(), l.rows};
  std::vector<acc_t> dc(static_cast<size_t>((ord() + 1) * (ord() + 1)));
  soft_scaled_by_power(coef.data_ptr<acc_t>(), ord(), dc.data());
  const SoftCoef<acc_t> P{coef.data_ptr<acc_t>(), dc.data()};
  const int64_t C = l.C;
  if (use_lanes(l, /*forward=*/false)) {
    for_each_tile<acc_t>(l, z_data, x_data, g_data, [&](const auto& T) { soft_backward_tile(T, P, ord, go, st, C); });
    return;
  }
  for_each_row<acc_t>(l, 0, [&](int64_t r, acc_t*) {
    const scalar_t* z = z_data + r * C;
    const scalar_t* x = x_data + r * C;
    scalar_t* out = g_data + r * C;
    if (std::isnan(st(0, r))) {  // NaN or +-inf logits
      std::fill(out, out + C, static_cast<scalar_t>(kNaN<acc_t>));
      return;
    }
    const Vec vmax(st(0, r)), vinv(st(1, r)), vD(st(2, r)), vscale(-go[r]);
    map_row<acc_t>(z, x, out, C, [&](const Vec& zj, const Vec& xj) {
      const Vec p = vexp(zj - vmax) * vinv;
      return vscale * p * (soft_derivative(P.dc, ord, xj, p) - vD);
    });
  });
}

void soft_forward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef, at::Tensor& loss,
                  at::Tensor& stats, const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_soft_forward", [&] {
    dispatch_order(K, [&](auto ord) { soft_forward_impl<scalar_t>(logits, target, coef, loss, stats, l, ord); });
  });
}

void soft_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                   const at::Tensor& coef, const at::Tensor& stats, at::Tensor& grad, const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_soft_backward", [&] {
    dispatch_order(K, [&](auto ord) {
      soft_backward_impl<scalar_t>(grad_loss, logits, target, coef, stats, grad, l, ord);
    });
  });
}

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo
