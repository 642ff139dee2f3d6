// CPU kernels of the Taylor loss (see ../taylor_loss.cpp for the math and the op contract).
//
// Rows are independent and split across threads with at::parallel_for. Within a row every loop is
// vectorized with at::vec::Vectorized in the accumulation type (float for 16-bit and float32 inputs,
// double for float64). Hard labels: the forward makes two passes over the row (max; then exp and the
// power sums R_m = sum_{j != t} e_j^m, accumulated over [0, t) and (t, C) so that the target never
// enters them), the backward one pass (recompute p from the saved lse, write the gradient). A row is
// staged in a per-thread buffer when it is strided (N-d inputs) or 16-bit; otherwise the kernels read
// the logits in place. Peak extra memory: the gradient plus O(C) per thread.
//
// This file is compiled once per CPU capability (kernel_default.cpp, kernel_avx2.cpp,
// kernel_avx512.cpp), each time in its own namespace TAYLORGLO_CPU_NS; taylor_loss_cpu.cpp picks one
// at run time.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"

#include <ATen/Dispatch.h>

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

using at::vec::Vectorized;

// Calls fn(r, z, x, out) for every row r in [0, l.rows) of a contiguous (N, C) input: z (and x) are the
// row's C values as contiguous acc_t, out a contiguous acc_t row that is stored into `grad` afterwards
// (null when grad is null). Rows already in the accumulation type are used in place; 16-bit rows are
// converted into a per-thread buffer.
template <typename acc_t, typename scalar_t, typename F>
void for_each_row(const RowLayout& l, const scalar_t* z_data, const scalar_t* x_data, scalar_t* grad, F&& fn) {
  const int64_t C = l.C;
  TORCH_INTERNAL_ASSERT(l.inner == 1);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1));
    at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
      constexpr bool in_place = std::is_same_v<scalar_t, acc_t>;
      std::vector<acc_t> zbuf(in_place ? 0 : C), xbuf(in_place || !x_data ? 0 : C), gbuf(in_place || !grad ? 0 : C);
      for (int64_t r = begin; r < end; ++r) {
        const acc_t* z;
        const acc_t* x = nullptr;
        acc_t* out = nullptr;
        if constexpr (in_place) {
          z = z_data + r * C;
          if (x_data) x = x_data + r * C;
          if (grad) out = grad + r * C;
        } else {
          at::vec::convert(z_data + r * C, zbuf.data(), C);
          z = zbuf.data();
          if (x_data) {
            at::vec::convert(x_data + r * C, xbuf.data(), C);
            x = xbuf.data();
          }
          if (grad) out = gbuf.data();
        }
        fn(r, z, x, out);
        if constexpr (!in_place) {
          if (grad) at::vec::convert(out, grad + r * C, C);
        }
      }
    });
}

// The row's values z[j..j+V) as a vector; lanes past the row's end hold `pad`, so rows of any C are
// processed in whole vectors, never in scalar tails.
template <typename acc_t>
inline Vectorized<acc_t> load_padded(const acc_t* z, int64_t remaining, acc_t pad) {
  using Vec = Vectorized<acc_t>;
  if (remaining >= Vec::size()) return Vec::loadu(z);
  return Vec::set(Vec(pad), Vec::loadu(z, remaining), remaining);
}

template <typename acc_t>
acc_t row_max(const acc_t* z, int64_t C) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  Vec vm(kNegInf);
  for (int64_t j = 0; j < C; j += Vec::size()) vm = at::vec::maximum(vm, load_padded(z + j, C - j, kNegInf));
  std::array<acc_t, Vec::size()> lanes;
  vm.store(lanes.data());
  acc_t m = kNegInf;
  for (acc_t v : lanes) m = (v > m || std::isnan(v)) ? v : m;  // NaN propagates to the loss
  return m;
}

// Adds sum_{j != skip} e_j^m, e_j = exp(z_j - shift), to acc[m] for m = 1..K (skip = -1: all j). The
// skipped class is masked to -inf inside its vector, so it never enters the sums (no cancellation).
template <typename acc_t>
void add_power_sums(const acc_t* z, int64_t C, int64_t skip, acc_t shift, int K, acc_t* acc) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  std::array<Vec, kMaxOrder + 1> v;
  for (int m = 1; m <= K; ++m) v[m] = Vec(acc_t(0));
  const Vec vshift(shift);
  for (int64_t j = 0; j < C; j += Vec::size()) {
    Vec zj = load_padded(z + j, C - j, kNegInf);
    if (skip >= j && skip < j + Vec::size()) {
      zj = Vec::blendv(zj, Vec(kNegInf), Vec::arange(acc_t(j), acc_t(1)) == Vec(acc_t(skip)));
    }
    const Vec e = (zj - vshift).exp();
    Vec pw = e;
    for (int m = 1; m <= K; ++m) {
      v[m] = v[m] + pw;
      pw = pw * e;
    }
  }
  for (int m = 1; m <= K; ++m) acc[m] += at::vec::vec_reduce_all<acc_t>([](Vec a, Vec b) { return a + b; }, v[m]);
}

template <typename acc_t>
inline acc_t poly(const acc_t* c, int K, acc_t p) {  // sum_{m=0..K} c_m p^m
  acc_t r = c[K];
  for (int m = K - 1; m >= 0; --m) r = r * p + c[m];
  return r;
}

template <typename acc_t>
inline acc_t poly_derivative(const acc_t* c, int K, acc_t p) {  // sum_{m=1..K} m c_m p^(m-1)
  acc_t r = K * c[K];
  for (int m = K - 1; m >= 1; --m) r = r * p + m * c[m];
  return r;
}

template <typename acc_t>
void check_target(int64_t t, int64_t r, int64_t C, int64_t ignore_index) {
  TORCH_CHECK(t >= 0 && t < C, "taylorglo: target ", t, " at position ", r, " is out of range for ", C,
              " classes (valid: 0..", C - 1, ", or ignore_index=", ignore_index, ")");
}

// Soft labels: f(x, p) = sum_{i,m} c[i][m] x^i p^m with x the per-class target probability.
template <typename acc_t>
struct SoftPoly {
  const acc_t* c;
  int K;
  // a_m(x) = sum_{i <= K - m} c[i][m] x^i (a polynomial of total degree K has no x^i p^m with i + m > K),
  // then f = sum_m a_m p^m and g = sum_m m a_m p^(m-1): (K+1)(K+2)/2 multiply-adds, not (K+1)^2.
  template <typename T>
  inline T coefficient(int m, T x) const {
    T a = T(c[(K - m) * (K + 1) + m]);
    for (int i = K - m - 1; i >= 0; --i) a = a * x + T(c[i * (K + 1) + m]);
    return a;
  }

  template <typename T>
  inline void eval(T x, T p, T& f, T& g) const {
    T fa = T(0), ga = T(0);
    for (int m = K; m >= 0; --m) {
      const T a = coefficient(m, x);
      fa = fa * p + a;
      if (m >= 1) ga = ga * p + a * T(acc_t(m));
    }
    f = fa;
    g = ga;
  }

  template <typename T>
  inline T derivative(T x, T p) const {  // g only (the backward needs no f)
    T ga = T(0);
    for (int m = K; m >= 1; --m) ga = ga * p + coefficient(m, x) * T(acc_t(m));
    return ga;
  }
};

// ------------------------------------------------------------------------------------------------
// N-d inputs (N, C, d1, ..., dk): one row's classes are `inner` apart while neighbouring rows are
// adjacent, so these kernels put V = Vec::size() neighbouring rows in the lanes of a vector and loop
// over the classes. Every load and store is a contiguous run of V values and no lane is wasted on
// padding, whatever C is (segmentation's C = 21 would fill 21 of 32 lanes row by row).

template <typename scalar_t>
constexpr bool kIs16Bit = std::is_same_v<scalar_t, c10::BFloat16> || std::is_same_v<scalar_t, c10::Half>;

template <typename acc_t, typename scalar_t>
inline Vectorized<acc_t> load_lanes(const scalar_t* p, int64_t n) {
  using Vec = Vectorized<acc_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return n == Vec::size() ? Vec::loadu(p) : Vec::loadu(p, n);
  } else if constexpr (kIs16Bit<scalar_t> && std::is_same_v<acc_t, float>) {
    Vec out;
    if (n == Vec::size()) {
      at::vec::load_to_float<scalar_t>(p, out);
    } else {
      __at_align__ scalar_t buf[Vec::size()] = {};
      std::copy(p, p + n, buf);
      at::vec::load_to_float<scalar_t>(buf, out);
    }
    return out;
  } else {
    __at_align__ acc_t buf[Vec::size()] = {};
    for (int64_t k = 0; k < n; ++k) buf[k] = static_cast<acc_t>(p[k]);
    return Vec::loadu(buf);
  }
}

template <typename acc_t, typename scalar_t>
inline void store_lanes(const Vectorized<acc_t>& v, scalar_t* p, int64_t n) {
  using Vec = Vectorized<acc_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    v.store(p, n);
  } else if constexpr (kIs16Bit<scalar_t> && std::is_same_v<acc_t, float>) {
    at::vec::convert_from_float<scalar_t>(v, v).store(p, n);
  } else {
    __at_align__ acc_t buf[Vec::size()];
    v.store(buf);
    for (int64_t k = 0; k < n; ++k) p[k] = static_cast<scalar_t>(buf[k]);
  }
}

// Calls fn(r0, base, n) for each tile of n <= V neighbouring rows r0..r0+n-1 of one outer index; class j
// of the tile's rows starts at base + j * inner.
template <typename acc_t, typename F>
void for_each_lane_tile(const RowLayout& l, F&& fn) {
  constexpr int64_t V = Vectorized<acc_t>::size();
  const int64_t tiles_per_outer = (l.inner + V - 1) / V;
  const int64_t outer = l.rows / l.inner;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(l.C * V, 1));
  at::parallel_for(0, outer * tiles_per_outer, grain, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t o = tile / tiles_per_outer, i0 = (tile % tiles_per_outer) * V;
      fn(o * l.inner + i0, o * l.C * l.inner + i0, std::min(V, l.inner - i0));
    }
  });
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
      check_target<acc_t>(t, r0 + k, C, ignore_index);
    }
    tl[k] = static_cast<acc_t>(t);
  }
  return Vec::loadu(tl);
}

template <typename acc_t>
inline Vectorized<acc_t> vpoly(const acc_t* c, int K, const Vectorized<acc_t>& p) {
  using Vec = Vectorized<acc_t>;
  Vec r(c[K]);
  for (int m = K - 1; m >= 0; --m) r = at::vec::fmadd(r, p, Vec(c[m]));
  return r;
}

template <typename acc_t>
inline Vectorized<acc_t> vpoly_derivative(const acc_t* c, int K, const Vectorized<acc_t>& p) {
  using Vec = Vectorized<acc_t>;
  Vec r(acc_t(K) * c[K]);
  for (int m = K - 1; m >= 1; --m) r = at::vec::fmadd(r, p, Vec(acc_t(m) * c[m]));
  return r;
}

template <typename scalar_t, typename acc_t>
void hard_forward_lanes(const scalar_t* z_data, const int64_t* t_data, const acc_t* A, const acc_t* B,
                        int64_t ignore_index, acc_t* loss_data, acc_t* st, const RowLayout& l, int K) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  for_each_lane_tile<acc_t>(l, [&](int64_t r0, int64_t base, int64_t n) {
    const Vec tv = lane_targets<acc_t>(t_data, r0, n, l.C, ignore_index);
    Vec M(kNegInf);
    for (int64_t j = 0; j < l.C; ++j) M = at::vec::maximum(M, load_lanes<acc_t>(z_data + base + j * l.inner, n));
    std::array<Vec, kMaxOrder + 1> R;
    for (int m = 1; m <= K; ++m) R[m] = Vec(acc_t(0));
    Vec zt(acc_t(0));
    for (int64_t j = 0; j < l.C; ++j) {
      const Vec zj = load_lanes<acc_t>(z_data + base + j * l.inner, n);
      const Vec is_t = tv == Vec(acc_t(j));
      zt = Vec::blendv(zt, zj, is_t);
      const Vec e = Vec::blendv((zj - M).exp(), Vec(acc_t(0)), is_t);  // the target stays out of R
      Vec pw = e;
      for (int m = 1; m <= K; ++m) {
        R[m] = R[m] + pw;
        pw = pw * e;
      }
    }
    const Vec e_t = (zt - M).exp(), total = R[1] + e_t, inv = Vec(acc_t(1)) / total;
    Vec lossv(A[0] * acc_t(l.C - 1)), Q(acc_t(0)), scale(acc_t(1));
    for (int m = 1; m <= K; ++m) {
      scale = scale * inv;
      const Vec S = R[m] * scale;
      lossv = at::vec::fmadd(Vec(A[m]), S, lossv);
      Q = at::vec::fmadd(Vec(acc_t(m) * A[m]), S, Q);
    }
    const Vec pt = e_t * inv;
    lossv = lossv + vpoly(B, K, pt);
    __at_align__ acc_t out[5][Vec::size()];
    (Vec(acc_t(0)) - lossv).store(out[0]);
    (M + total.log()).store(out[1]);
    at::vec::fmadd(vpoly_derivative(B, K, pt), pt, Q).store(out[2]);
    Q.store(out[3]);
    (R[1] * inv).store(out[4]);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t r = r0 + k;
      const bool ignored = t_data[r] == ignore_index;
      loss_data[r] = ignored ? acc_t(0) : out[0][k];
      for (int q = 0; q < 4; ++q) st[4 * r + q] = ignored ? acc_t(0) : out[q + 1][k];
    }
  });
}

template <typename scalar_t, typename acc_t>
void hard_backward_lanes(const acc_t* go, const scalar_t* z_data, const int64_t* t_data, const acc_t* dA, const acc_t* B,
                         const acc_t* st, int64_t ignore_index, scalar_t* g_data, const RowLayout& l, int K) {
  using Vec = Vectorized<acc_t>;
  for_each_lane_tile<acc_t>(l, [&](int64_t r0, int64_t base, int64_t n) {
    const Vec tv = lane_targets<acc_t>(t_data, r0, n, l.C, ignore_index);
    __at_align__ acc_t lane[5][Vec::size()] = {};
    for (int64_t k = 0; k < n; ++k) {
      for (int q = 0; q < 4; ++q) lane[q][k] = st[4 * (r0 + k) + q];
      lane[4][k] = -go[r0 + k];
    }
    const Vec lse = Vec::loadu(lane[0]), D = Vec::loadu(lane[1]), Q = Vec::loadu(lane[2]), omp = Vec::loadu(lane[3]);
    const Vec gscale = Vec::loadu(lane[4]);
    const Vec valid = tv >= Vec(acc_t(0));
    for (int64_t j = 0; j < l.C; ++j) {
      const Vec p = (load_lanes<acc_t>(z_data + base + j * l.inner, n) - lse).exp();
      const Vec g_other = vpoly(dA, K - 1, p) - D;
      const Vec g_target = vpoly_derivative(B, K, p) * omp - Q;  // g_t - D without cancellation
      const Vec g = Vec::blendv(g_other, g_target, tv == Vec(acc_t(j)));
      const Vec out = Vec::blendv(Vec(acc_t(0)), gscale * p * g, valid);  // ignored rows: exact zeros
      store_lanes<acc_t>(out, g_data + base + j * l.inner, n);
    }
  });
}

template <typename scalar_t, typename acc_t, typename Poly>
void soft_forward_lanes(const scalar_t* z_data, const scalar_t* x_data, const Poly& P, acc_t* loss_data, acc_t* st,
                        const RowLayout& l) {
  using Vec = Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  for_each_lane_tile<acc_t>(l, [&](int64_t r0, int64_t base, int64_t n) {
    Vec M(kNegInf), total(acc_t(0));
    for (int64_t j = 0; j < l.C; ++j) M = at::vec::maximum(M, load_lanes<acc_t>(z_data + base + j * l.inner, n));
    for (int64_t j = 0; j < l.C; ++j) total = total + (load_lanes<acc_t>(z_data + base + j * l.inner, n) - M).exp();
    const Vec lse = M + total.log();
    Vec fsum(acc_t(0)), dsum(acc_t(0));
    for (int64_t j = 0; j < l.C; ++j) {
      const Vec p = (load_lanes<acc_t>(z_data + base + j * l.inner, n) - lse).exp();
      Vec f, g;
      P.eval(load_lanes<acc_t>(x_data + base + j * l.inner, n), p, f, g);
      fsum = fsum + f;
      dsum = at::vec::fmadd(g, p, dsum);
    }
    __at_align__ acc_t out[3][Vec::size()];
    (Vec(acc_t(0)) - fsum).store(out[0]);
    lse.store(out[1]);
    dsum.store(out[2]);
    for (int64_t k = 0; k < n; ++k) {
      loss_data[r0 + k] = out[0][k];
      st[2 * (r0 + k)] = out[1][k];
      st[2 * (r0 + k) + 1] = out[2][k];
    }
  });
}

template <typename scalar_t, typename acc_t, typename Poly>
void soft_backward_lanes(const acc_t* go, const scalar_t* z_data, const scalar_t* x_data, const Poly& P, const acc_t* st,
                         scalar_t* g_data, const RowLayout& l) {
  using Vec = Vectorized<acc_t>;
  for_each_lane_tile<acc_t>(l, [&](int64_t r0, int64_t base, int64_t n) {
    __at_align__ acc_t lane[3][Vec::size()] = {};
    for (int64_t k = 0; k < n; ++k) {
      lane[0][k] = st[2 * (r0 + k)];
      lane[1][k] = st[2 * (r0 + k) + 1];
      lane[2][k] = -go[r0 + k];
    }
    const Vec lse = Vec::loadu(lane[0]), D = Vec::loadu(lane[1]), gscale = Vec::loadu(lane[2]);
    for (int64_t j = 0; j < l.C; ++j) {
      const Vec p = (load_lanes<acc_t>(z_data + base + j * l.inner, n) - lse).exp();
      const Vec g = P.derivative(load_lanes<acc_t>(x_data + base + j * l.inner, n), p);
      store_lanes<acc_t>(gscale * p * (g - D), g_data + base + j * l.inner, n);
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Hard labels

template <typename scalar_t>
void hard_forward_impl(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef, int64_t ignore_index,
                       at::Tensor& loss, at::Tensor& stats, const RowLayout& l, int K) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  const int64_t* t_data = target.data_ptr<int64_t>();
  const acc_t* A = coef.data_ptr<acc_t>();
  const acc_t* B = A + (K + 1);
  acc_t* loss_data = loss.data_ptr<acc_t>();
  acc_t* st = stats.data_ptr<acc_t>();
  if (l.inner > 1) return hard_forward_lanes(z_data, t_data, A, B, ignore_index, loss_data, st, l, K);
  for_each_row<acc_t>(l, z_data, static_cast<const scalar_t*>(nullptr), static_cast<scalar_t*>(nullptr),
                      [&](int64_t r, const acc_t* z, const acc_t*, acc_t*) {
    const int64_t t = t_data[r];
    acc_t* s = st + 4 * r;
    if (t == ignore_index) {
      loss_data[r] = 0;
      s[0] = s[1] = s[2] = s[3] = 0;
      return;
    }
    check_target<acc_t>(t, r, l.C, ignore_index);
    const acc_t zmax = row_max(z, l.C);
    std::array<acc_t, kMaxOrder + 1> R{};
    add_power_sums(z, l.C, t, zmax, K, R.data());
    const acc_t e_t = std::exp(z[t] - zmax);
    const acc_t total = R[1] + e_t;
    const acc_t inv = acc_t(1) / total;
    // S_m = sum_{j != t} p_j^m; loss = -(sum_m A_m S_m + B(p_t)); Q = sum_m m A_m S_m.
    acc_t lossv = A[0] * acc_t(l.C - 1), Q = 0, scale = 1;
    for (int m = 1; m <= K; ++m) {
      scale *= inv;
      const acc_t S = R[m] * scale;
      lossv += A[m] * S;
      Q += m * A[m] * S;
    }
    const acc_t pt = e_t * inv;
    lossv += poly(B, K, pt);
    loss_data[r] = -lossv;
    s[0] = zmax + std::log(total);
    s[1] = Q + poly_derivative(B, K, pt) * pt;
    s[2] = Q;
    s[3] = R[1] * inv;
  });
}

template <typename scalar_t>
void hard_backward_impl(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                        const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index, at::Tensor& grad,
                        const RowLayout& l, int K) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  scalar_t* g_data = grad.data_ptr<scalar_t>();
  const int64_t* t_data = target.data_ptr<int64_t>();
  const acc_t* A = coef.data_ptr<acc_t>();
  const acc_t* B = A + (K + 1);
  const acc_t* go = grad_loss.data_ptr<acc_t>();
  const acc_t* st = stats.data_ptr<acc_t>();
  // Derivative coefficients of A: A'(p) = sum_{m=0..K-1} dA_m p^m.
  std::array<acc_t, kMaxOrder + 1> dA{};
  for (int m = 0; m < K; ++m) dA[m] = (m + 1) * A[m + 1];
  if (l.inner > 1) return hard_backward_lanes(go, z_data, t_data, dA.data(), B, st, ignore_index, g_data, l, K);
  for_each_row<acc_t>(l, z_data, static_cast<const scalar_t*>(nullptr), g_data,
                      [&](int64_t r, const acc_t* z, const acc_t*, acc_t* out) {
    const int64_t t = t_data[r];
    if (t == ignore_index) {
      std::fill(out, out + l.C, acc_t(0));
      return;
    }
    check_target<acc_t>(t, r, l.C, ignore_index);
    const acc_t* s = st + 4 * r;
    const acc_t lse = s[0], D = s[1], Q = s[2], omp = s[3];
    const acc_t gscale = -go[r];
    const Vec vlse(lse), vD(D), vscale(gscale);
    for (int64_t j = 0; j < l.C; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), l.C - j);
      const Vec p = (load_padded(z + j, n, acc_t(0)) - vlse).exp();
      Vec gp(dA[K - 1]);
      for (int m = K - 2; m >= 0; --m) gp = at::vec::fmadd(gp, p, Vec(dA[m]));
      (vscale * p * (gp - vD)).store(out + j, n);
    }
    // Target: g_t - D = B'(p_t)(1 - p_t) - Q with 1 - p_t taken from the non-target sums.
    const acc_t pt = std::exp(z[t] - lse);
    out[t] = gscale * pt * (poly_derivative(B, K, pt) * omp - Q);
  });
}

// ------------------------------------------------------------------------------------------------
// Soft labels: f(x, p) = sum_{i,m} c[i][m] x^i p^m with x the per-class target probability.


template <typename scalar_t>
void soft_forward_impl(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                       at::Tensor& loss, at::Tensor& stats, const RowLayout& l, int K) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  const scalar_t* x_data = target.data_ptr<scalar_t>();
  acc_t* loss_data = loss.data_ptr<acc_t>();
  acc_t* st = stats.data_ptr<acc_t>();
  const SoftPoly<acc_t> P{coef.data_ptr<acc_t>(), K};
  if (l.inner > 1) return soft_forward_lanes(z_data, x_data, P, loss_data, st, l);
  for_each_row<acc_t>(l, z_data, x_data, static_cast<scalar_t*>(nullptr),
                      [&](int64_t r, const acc_t* z, const acc_t* x, acc_t*) {
    const acc_t zmax = row_max(z, l.C);
    std::array<acc_t, kMaxOrder + 1> R{};
    add_power_sums(z, l.C, -1, zmax, 1, R.data());
    const acc_t lse = zmax + std::log(R[1]);
    Vec vf(acc_t(0)), vd(acc_t(0));
    const Vec vlse(lse);
    for (int64_t j = 0; j < l.C; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), l.C - j);
      const Vec p = (load_padded(z + j, n, acc_t(0)) - vlse).exp();
      Vec f, g;
      P.eval(load_padded(x + j, n, acc_t(0)), p, f, g);
      if (n < Vec::size()) {  // lanes past the row's end must not count
        f = Vec::set(Vec(acc_t(0)), f, n);
        g = Vec::set(Vec(acc_t(0)), g, n);
      }
      vf = vf + f;
      vd = vd + g * p;
    }
    auto sum = [](Vec a, Vec b) { return a + b; };
    const acc_t fsum = at::vec::vec_reduce_all<acc_t>(sum, vf), dsum = at::vec::vec_reduce_all<acc_t>(sum, vd);
    loss_data[r] = -fsum;
    st[2 * r] = lse;
    st[2 * r + 1] = dsum;
  });
}

template <typename scalar_t>
void soft_backward_impl(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                        const at::Tensor& coef, const at::Tensor& stats, at::Tensor& grad, const RowLayout& l,
                        int K) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  const scalar_t* x_data = target.data_ptr<scalar_t>();
  scalar_t* g_data = grad.data_ptr<scalar_t>();
  const acc_t* go = grad_loss.data_ptr<acc_t>();
  const acc_t* st = stats.data_ptr<acc_t>();
  const SoftPoly<acc_t> P{coef.data_ptr<acc_t>(), K};
  if (l.inner > 1) return soft_backward_lanes(go, z_data, x_data, P, st, g_data, l);
  for_each_row<acc_t>(l, z_data, x_data, g_data, [&](int64_t r, const acc_t* z, const acc_t* x, acc_t* out) {
    const acc_t lse = st[2 * r], D = st[2 * r + 1], gscale = -go[r];
    const Vec vlse(lse), vD(D), vscale(gscale);
    for (int64_t j = 0; j < l.C; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), l.C - j);
      const Vec p = (load_padded(z + j, n, acc_t(0)) - vlse).exp();
      const Vec g = P.derivative(load_padded(x + j, n, acc_t(0)), p);
      (vscale * p * (g - vD)).store(out + j, n);
    }
  });
}

// Kernel table of this capability.
void hard_forward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                         int64_t ignore_index, at::Tensor& loss, at::Tensor& stats, const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_hard_forward", [&] {
    hard_forward_impl<scalar_t>(logits, target, coef, ignore_index, loss, stats, l, K);
  });
}

void hard_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                          const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index, at::Tensor& grad,
                          const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_hard_backward", [&] {
    hard_backward_impl<scalar_t>(grad_loss, logits, target, coef, stats, ignore_index, grad, l, K);
  });
}

void soft_forward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef, at::Tensor& loss,
                         at::Tensor& stats, const RowLayout& l, int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_soft_forward", [&] {
    soft_forward_impl<scalar_t>(logits, target, coef, loss, stats, l, K);
  });
}

void soft_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                          const at::Tensor& coef, const at::Tensor& stats, at::Tensor& grad, const RowLayout& l,
                          int K) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "taylorglo_soft_backward", [&] {
    soft_backward_impl<scalar_t>(grad_loss, logits, target, coef, stats, grad, l, K);
  });
}

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo

