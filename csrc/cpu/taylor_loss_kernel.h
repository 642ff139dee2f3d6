// CPU kernels of the Taylor loss (see ../taylor_loss.cpp for the math and the op contract).
//
// Every loop is vectorized with at::vec::Vectorized in the accumulation type acc_t (float for 16-bit
// and float32 inputs, double for float64); 16-bit values are converted in registers as they are
// loaded and stored. Work is split across threads with at::parallel_for. Three layouts:
//
// - rows: (N, C) inputs with many classes. One row at a time, its classes in the lanes. Hard labels:
//   the forward makes two passes over the row (max; then exp and the power sums
//   R_m = sum_{j != t} e_j^m, with the target masked out so it never enters them), the backward one.
//   Soft labels: the forward keeps exp(z - max) of the row in a per-thread buffer (one exp per logit).
// - lanes: N-d inputs (N, C, d1, ..., dk), where neighbouring rows are adjacent in memory. V = vector
//   width neighbouring rows sit in the lanes of a vector and the loops run over the classes: every
//   load and store is a contiguous run and no lane is padding, whatever C is.
// - transposed lanes: (N, C) inputs with few classes, whose rows would fill a fraction of a vector
//   and spend most of their time in horizontal reductions. Tiles of V rows are transposed into a
//   per-thread buffer and run through the lane kernels (forward C <= 96, backward C <= 8).
//
// The polynomial order is a compile-time constant for orders 2..6 (loops unroll, the power sums stay
// in registers) and a run-time value for the others. Peak extra memory: the gradient plus O(C V) per
// thread.
//
// This file is compiled once per CPU capability (default, AVX2, AVX-512) and label kind, each time in
// the capability's namespace TAYLORGLO_CPU_NS: kernel_<capability>_hard.cpp defines
// TAYLORGLO_KERNELS_HARD and gets hard_forward/hard_backward, kernel_<capability>_soft.cpp defines
// TAYLORGLO_KERNELS_SOFT and gets soft_forward/soft_backward. Six translation units of similar size,
// so that a parallel build compiles them side by side; taylor_loss_cpu.cpp picks a capability at
// run time.

#if defined(TAYLORGLO_KERNELS_HARD) == defined(TAYLORGLO_KERNELS_SOFT)
#error "define exactly one of TAYLORGLO_KERNELS_HARD and TAYLORGLO_KERNELS_SOFT before including taylor_loss_kernel.h"
#endif

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "../checks.h"

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

using at::vec::Vectorized;

template <typename acc_t>
constexpr acc_t kNaN = std::numeric_limits<acc_t>::quiet_NaN();

template <typename scalar_t>
constexpr bool kIs16Bit = std::is_same_v<scalar_t, c10::BFloat16> || std::is_same_v<scalar_t, c10::Half>;

// (N, C) inputs with at most this many classes run through transposed lane tiles (measured on AVX-512
// and AVX2: rows are faster beyond).
constexpr int64_t kMaxTransposedClassesForward = 96;
constexpr int64_t kMaxTransposedClassesBackward = 8;

// ------------------------------------------------------------------------------------------------
// The polynomial order: a compile-time constant (KC > 0) or a run-time value (KC == 0).

template <int KC>
struct Order {
  int k;
  constexpr int operator()() const {
    if constexpr (KC > 0) {
      return KC;
    } else {
      return k;
    }
  }
};

template <typename F>
inline void dispatch_order(int K, F&& f) {
  switch (K) {
    case 2: return f(Order<2>{2});
    case 3: return f(Order<3>{3});
    case 4: return f(Order<4>{4});
    case 5: return f(Order<5>{5});
    case 6: return f(Order<6>{6});
    default: return f(Order<0>{K});
  }
}

// ------------------------------------------------------------------------------------------------
// Loads and stores of up to one vector of acc_t values from and to scalar_t memory.

// p[0..n) as a vector (n may exceed the vector width: then a whole vector); lanes past n hold `pad`.
template <typename acc_t, typename scalar_t>
inline Vectorized<acc_t> load_vec(const scalar_t* p, int64_t n, acc_t pad) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t V = Vec::size();
  Vec v;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (n >= V) return Vec::loadu(p);
    v = Vec::loadu(p, n);
  } else {
    static_assert(kIs16Bit<scalar_t> && std::is_same_v<acc_t, float>, "16-bit inputs accumulate in float");
    if (n >= V) {
      at::vec::load_to_float<scalar_t>(p, v);
      return v;
    }
    __at_align__ scalar_t buf[V] = {};
    std::copy(p, p + n, buf);
    at::vec::load_to_float<scalar_t>(buf, v);
  }
  return Vec::set(Vec(pad), v, n);
}

// Stores the first min(n, V) lanes of v at p.
template <typename acc_t, typename scalar_t>
inline void store_vec(const Vectorized<acc_t>& v, scalar_t* p, int64_t n) {
  constexpr int64_t V = Vectorized<acc_t>::size();
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (n >= V) {
      v.store(p);
    } else {
      v.store(p, n);
    }
  } else {
    at::vec::convert_from_float<scalar_t>(v, v).store(p, std::min(n, V));
  }
}

// out[j] = f(z_j, x_j) for j in [0, C), f mapping vectors of acc_t (x null: zeros). 16-bit rows go
// two vectors per step, so that each conversion back to 16 bits fills a whole vector.
template <typename acc_t, typename scalar_t, typename F>
inline void map_row(const scalar_t* z, const scalar_t* x, scalar_t* out, int64_t C, F&& f) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t V = Vec::size();
  auto xv = [&](int64_t j) { return x ? load_vec<acc_t>(x + j, C - j, acc_t(0)) : Vec(acc_t(0)); };
  if constexpr (kIs16Bit<scalar_t>) {
    int64_t j = 0;
    for (; j + 2 * V <= C; j += 2 * V) {
      const Vec a = f(load_vec<acc_t>(z + j, V, acc_t(0)), xv(j));
      const Vec b = f(load_vec<acc_t>(z + j + V, V, acc_t(0)), xv(j + V));
      at::vec::convert_from_float<scalar_t>(a, b).store(out + j);
    }
    if (j < C) {
      const Vec a = f(load_vec<acc_t>(z + j, C - j, acc_t(0)), xv(j));
      const Vec b = C - j > V ? f(load_vec<acc_t>(z + j + V, C - j - V, acc_t(0)), xv(j + V)) : a;
      at::vec::convert_from_float<scalar_t>(a, b).store(out + j, static_cast<int>(C - j));
    }
  } else {
    for (int64_t j = 0; j < C; j += V) store_vec<acc_t>(f(load_vec<acc_t>(z + j, C - j, acc_t(0)), xv(j)), out + j, C - j);
  }
}

template <typename V, typename = void>
struct HasExpU20 : std::false_type {};
template <typename V>
struct HasExpU20<V, std::void_t<decltype(std::declval<const V&>().exp_u20())>> : std::true_type {};

// exp of float vectors: ATen's inlined polynomial (at most 20 ulp, flushes results below FLT_MIN to
// 0; ~25% faster end to end than the 1-ulp SLEEF call), where this torch has it. It does not
// propagate NaN, so rows whose max is not finite are made NaN explicitly in the forward, and
// rows whose statistics are NaN get NaN gradients. Double: exp.
template <typename acc_t>
inline Vectorized<acc_t> vexp(const Vectorized<acc_t>& v) {
  if constexpr (std::is_same_v<acc_t, float> && HasExpU20<Vectorized<acc_t>>::value) {
    return v.exp_u20();
  } else {
    return v.exp();
  }
}

template <typename acc_t>
inline acc_t reduce_add(const Vectorized<acc_t>& v) {
  return at::vec::vec_reduce_all<acc_t>([](Vectorized<acc_t> a, Vectorized<acc_t> b) { return a + b; }, v);
}

// ------------------------------------------------------------------------------------------------
// Polynomials

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

// Soft labels: f(x, p) = sum_{i,m} c[i][m] x^i p^m with x the per-class target probability. f has total
// degree K, so a_m(x) = sum_{i <= K - m} c[i][m] x^i and f = sum_m a_m(x) p^m: (K+1)(K+2)/2 multiply-adds.
template <typename acc_t, typename OrderT>
struct SoftPoly {
  const acc_t* c;   // (K+1, K+1), row i: the coefficients of x^i p^m
  const acc_t* dc;  // dc[i][m] = m c[i][m] (the backward's table), or null
  OrderT ord;

  using Vec = Vectorized<acc_t>;

  inline Vec coefficient(const acc_t* t, int m, const Vec& x) const {
    const int K = ord();
    Vec a(t[(K - m) * (K + 1) + m]);
    for (int i = K - m - 1; i >= 0; --i) a = at::vec::fmadd(a, x, Vec(t[i * (K + 1) + m]));
    return a;
  }

  // f and g = df/dp together (Horner's rule for a polynomial and its derivative).
  inline void eval(const Vec& x, const Vec& p, Vec& f, Vec& g) const {
    const int K = ord();
    Vec fa = coefficient(c, K, x), ga(acc_t(0));
    for (int m = K - 1; m >= 0; --m) {
      ga = at::vec::fmadd(ga, p, fa);
      fa = at::vec::fmadd(fa, p, coefficient(c, m, x));
    }
    f = fa;
    g = ga;
  }

  inline Vec derivative(const Vec& x, const Vec& p) const {  // g only (the backward's), from dc
    const int K = ord();
    Vec ga = coefficient(dc, K, x);
    for (int m = K - 1; m >= 1; --m) ga = at::vec::fmadd(ga, p, coefficient(dc, m, x));
    return ga;
  }
};

template <typename acc_t>
std::vector<acc_t> scaled_by_power(const acc_t* c, int K) {  // dc[i][m] = m c[i][m]
  std::vector<acc_t> dc(static_cast<size_t>((K + 1) * (K + 1)));
  for (int i = 0; i <= K; ++i)
    for (int m = 0; m <= K; ++m) dc[i * (K + 1) + m] = acc_t(m) * c[i * (K + 1) + m];
  return dc;
}

inline void check_target(int64_t t, int64_t r, int64_t C, int64_t ignore_index) {
  TORCH_CHECK(t >= 0 && t < C, "taylorglo: target ", t, " at position ", r, " is out of range for ", C,
              " classes (valid: 0..", C - 1, ", or ignore_index=", ignore_index, ")");
}

// ------------------------------------------------------------------------------------------------
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
// Hard labels. Coefficients: A (non-target classes), B (target class), both of length K + 1.

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
  const Vec e_t = vexp(zt - M), total = R[1] + e_t, inv = Vec(acc_t(1)) / total;
  Vec lossv(A[0] * acc_t(C - 1)), Q(acc_t(0)), scale(acc_t(1));
  for (int m = 1; m <= K; ++m) {
    scale = scale * inv;
    const Vec S = R[m] * scale;
    lossv = at::vec::fmadd(Vec(A[m]), S, lossv);
    Q = at::vec::fmadd(Vec(acc_t(m) * A[m]), S, Q);
  }
  const Vec pt = e_t * inv;
  lossv = lossv + vpoly(B, K, pt);
  const Vec D = at::vec::fmadd(vpoly_derivative(B, K, pt), pt, Q);
  // The tile's rows are neighbours in the loss and in every statistic's column: one store each.
  // M - M is 0 where the max is finite and NaN where a logit is NaN or infinite; ignored rows get 0.
  const Vec bad = M - M, valid = tv >= Vec(acc_t(0));
  auto put = [&](acc_t* column, const Vec& v) {
    Vec::blendv(Vec(acc_t(0)), v + bad, valid).store(column + T.r0, T.n);
  };
  put(loss_data, Vec(acc_t(0)) - lossv);
  put(st.column(0), M);
  put(st.column(1), inv);
  put(st.column(2), D);
  put(st.column(3), Q);
  put(st.column(4), R[1] * inv);
}

template <typename acc_t, typename Tile, typename OrderT>
void hard_backward_tile(const Tile& T, const acc_t* go, const int64_t* t_data, const acc_t* dA, const acc_t* B,
                        const RowStats<const acc_t>& st, int64_t C, int64_t ignore_index, OrderT ord) {
  using Vec = Vectorized<acc_t>;
  const int K = ord();
  const Vec tv = lane_targets<acc_t>(t_data, T.r0, T.n, C, ignore_index);
  // Unused lanes load zeros; ignored rows have zero statistics.
  const Vec M = Vec::loadu(st.column(0) + T.r0, T.n), inv = Vec::loadu(st.column(1) + T.r0, T.n);
  const Vec D = Vec::loadu(st.column(2) + T.r0, T.n), Q = Vec::loadu(st.column(3) + T.r0, T.n);
  const Vec omp = Vec::loadu(st.column(4) + T.r0, T.n);
  const Vec gscale = Vec(acc_t(0)) - Vec::loadu(go + T.r0, T.n);
  const Vec valid = tv >= Vec(acc_t(0));
  for (int64_t j = 0; j < C; ++j) {
    const Vec p = vexp(T.zj(j) - M) * inv;
    const Vec g_other = vpoly(dA, K - 1, p) - D;
    const Vec g_target = vpoly_derivative(B, K, p) * omp - Q;  // g_t - D without cancellation
    const Vec g = Vec::blendv(g_other, g_target, tv == Vec(acc_t(j)));
    const Vec out = Vec::blendv(Vec(kNaN<acc_t>), gscale * p * g, M == M);  // NaN statistics: NaN
    T.store_g(j, Vec::blendv(Vec(acc_t(0)), out, valid));                        // ignored rows: exact zeros
  }
}

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
    const acc_t e_t = std::exp(static_cast<acc_t>(z[t]) - zmax);
    const acc_t total = R[1] + e_t;
    const acc_t inv = acc_t(1) / total;
    // S_m = sum_{j != t} p_j^m; loss = -(sum_m A_m S_m + B(p_t)); Q = sum_m m A_m S_m.
    acc_t lossv = A[0] * acc_t(C - 1), Q = 0, scale = 1;
    for (int m = 1; m <= K; ++m) {
      scale *= inv;
      const acc_t S = R[m] * scale;
      lossv += A[m] * S;
      Q += m * A[m] * S;
    }
    const acc_t pt = e_t * inv;
    lossv += poly(B, K, pt);
    loss_data[r] = -lossv;
    st(0, r) = zmax;
    st(1, r) = inv;
    st(2, r) = Q + poly_derivative(B, K, pt) * pt;
    st(3, r) = Q;
    st(4, r) = R[1] * inv;
  });
}

template <typename scalar_t, typename OrderT>
void hard_backward_impl(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                        const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index, at::Tensor& grad,
                        const RowLayout& l, OrderT ord) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  const int K = ord();
  const scalar_t* z_data = logits.data_ptr<scalar_t>();
  scalar_t* g_data = grad.data_ptr<scalar_t>();
  const int64_t* t_data = target.data_ptr<int64_t>();
  const acc_t* A = coef.data_ptr<acc_t>();
  const acc_t* B = A + (K + 1);
  const acc_t* go = grad_loss.data_ptr<acc_t>();
  const RowStats<const acc_t> st{stats.data_ptr<acc_t>(), l.rows};
  const int64_t C = l.C;
  // Derivative coefficients of A: A'(p) = sum_{m=0..K-1} dA_m p^m.
  std::array<acc_t, kMaxOrder + 1> dA{};
  for (int m = 0; m < K; ++m) dA[m] = (m + 1) * A[m + 1];
  if (use_lanes(l, /*forward=*/false)) {
    for_each_tile<acc_t>(l, z_data, static_cast<const scalar_t*>(nullptr), g_data, [&](const auto& T) {
      hard_backward_tile(T, go, t_data, dA.data(), B, st, C, ignore_index, ord);
    });
    return;
  }
  for_each_row<acc_t>(l, 0, [&](int64_t r, acc_t*) {
    const int K = ord();
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
      Vec gp(dA[K - 1]);
      for (int m = K - 2; m >= 0; --m) gp = at::vec::fmadd(gp, p, Vec(dA[m]));
      return vscale * p * (gp - vD);
    });
    // Target: g_t - D = B'(p_t)(1 - p_t) - Q with 1 - p_t taken from the non-target sums.
    const acc_t pt = std::exp(static_cast<acc_t>(z[t]) - zmax) * inv;
    out[t] = static_cast<scalar_t>(gscale * pt * (poly_derivative(B, K, pt) * omp - Q));
  });
}

// ------------------------------------------------------------------------------------------------
// Soft labels

template <typename acc_t, typename Tile, typename Poly>
void soft_forward_tile(const Tile& T, const Poly& P, int64_t C, acc_t* loss_data, const RowStats<acc_t>& st) {
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
    P.eval(T.xj(j), p, f, g);
    fsum = fsum + f;
    dsum = at::vec::fmadd(g, p, dsum);
  }
  const Vec bad = M - M;  // 0 where the max is finite, NaN where a logit is NaN or infinite
  (Vec(acc_t(0)) - fsum + bad).store(loss_data + T.r0, T.n);
  (M + bad).store(st.column(0) + T.r0, T.n);
  (inv + bad).store(st.column(1) + T.r0, T.n);
  (dsum + bad).store(st.column(2) + T.r0, T.n);
}

template <typename acc_t, typename Tile, typename Poly>
void soft_backward_tile(const Tile& T, const Poly& P, const acc_t* go, const RowStats<const acc_t>& st, int64_t C) {
  using Vec = Vectorized<acc_t>;
  const Vec M = Vec::loadu(st.column(0) + T.r0, T.n), inv = Vec::loadu(st.column(1) + T.r0, T.n);
  const Vec D = Vec::loadu(st.column(2) + T.r0, T.n), gscale = Vec(acc_t(0)) - Vec::loadu(go + T.r0, T.n);
  for (int64_t j = 0; j < C; ++j) {
    const Vec p = vexp(T.zj(j) - M) * inv;
    T.store_g(j, Vec::blendv(Vec(kNaN<acc_t>), gscale * p * (P.derivative(T.xj(j), p) - D), M == M));
  }
}

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
  const SoftPoly<acc_t, OrderT> P{coef.data_ptr<acc_t>(), nullptr, ord};
  const int64_t C = l.C;
  if (use_lanes(l, /*forward=*/true)) {
    for_each_tile<acc_t>(l, z_data, x_data, static_cast<scalar_t*>(nullptr),
                         [&](const auto& T) { soft_forward_tile(T, P, C, loss_data, st); });
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
      P.eval(load_vec<acc_t>(x + j, C - j, acc_t(0)), p, f, g);
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
  const std::vector<acc_t> dc = scaled_by_power(coef.data_ptr<acc_t>(), ord());
  const SoftPoly<acc_t, OrderT> P{coef.data_ptr<acc_t>(), dc.data(), ord};
  const int64_t C = l.C;
  if (use_lanes(l, /*forward=*/false)) {
    for_each_tile<acc_t>(l, z_data, x_data, g_data, [&](const auto& T) { soft_backward_tile(T, P, go, st, C); });
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
      return vscale * p * (P.derivative(xj, p) - vD);
    });
  });
}

// ------------------------------------------------------------------------------------------------
// The kernels of this translation unit (declared in taylor_loss_cpu.cpp).

#if defined(TAYLORGLO_KERNELS_HARD)
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

#else
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
#endif

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo
