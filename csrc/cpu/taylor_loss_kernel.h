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

template <typename acc_t>
struct Row {
  // Loads row r of a (outer, C, inner) tensor into contiguous acc_t values, in place when possible.
  template <typename scalar_t>
  static const acc_t* load(const scalar_t* data, int64_t r, const RowLayout& l, acc_t* buf) {
    const int64_t o = r / l.inner, i = r % l.inner;
    const scalar_t* src = data + o * l.C * l.inner + i;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (l.inner == 1) return src;
    }
    if (l.inner == 1) {
      at::vec::convert(src, buf, l.C);
    } else {
      for (int64_t j = 0; j < l.C; ++j) buf[j] = static_cast<acc_t>(src[j * l.inner]);
    }
    return buf;
  }

  // Stores contiguous acc_t values into row r, or leaves them when `out` already is that row.
  template <typename scalar_t>
  static void store(scalar_t* data, int64_t r, const RowLayout& l, const acc_t* vals) {
    const int64_t o = r / l.inner, i = r % l.inner;
    scalar_t* dst = data + o * l.C * l.inner + i;
    if (static_cast<const void*>(dst) == static_cast<const void*>(vals)) return;
    if (l.inner == 1) {
      at::vec::convert(vals, dst, l.C);
    } else {
      for (int64_t j = 0; j < l.C; ++j) dst[j * l.inner] = static_cast<scalar_t>(vals[j]);
    }
  }

  // Writable destination for row r: the output row itself when contiguous and of type acc_t.
  template <typename scalar_t>
  static acc_t* out_ptr(scalar_t* data, int64_t r, const RowLayout& l, acc_t* buf) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (l.inner == 1) return data + r * l.C;
    }
    return buf;
  }
};

template <typename acc_t>
acc_t row_max(const acc_t* z, int64_t C) {
  using Vec = Vectorized<acc_t>;
  int64_t j = 0;
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  if (C >= Vec::size()) {
    Vec vm = Vec::loadu(z);
    for (j = Vec::size(); j + Vec::size() <= C; j += Vec::size()) vm = at::vec::maximum(vm, Vec::loadu(z + j));
    std::array<acc_t, Vec::size()> lanes;
    vm.store(lanes.data());
    for (acc_t v : lanes) m = (v > m || std::isnan(v)) ? v : m;
  }
  for (; j < C; ++j) m = (z[j] > m || std::isnan(z[j])) ? z[j] : m;
  return m;
}

// Adds sum_{j in [begin, end)} e_j^m, e_j = exp(z_j - shift), to acc[m] for m = 1..K.
template <typename acc_t>
void add_power_sums(const acc_t* z, int64_t begin, int64_t end, acc_t shift, int K, acc_t* acc) {
  using Vec = Vectorized<acc_t>;
  std::array<Vec, kMaxOrder + 1> v;
  for (int m = 1; m <= K; ++m) v[m] = Vec(acc_t(0));
  const Vec vshift(shift);
  int64_t j = begin;
  for (; j + Vec::size() <= end; j += Vec::size()) {
    const Vec e = (Vec::loadu(z + j) - vshift).exp();
    Vec pw = e;
    for (int m = 1; m <= K; ++m) {
      v[m] = v[m] + pw;
      pw = pw * e;
    }
  }
  for (int m = 1; m <= K; ++m) acc[m] += at::vec::vec_reduce_all<acc_t>([](Vec a, Vec b) { return a + b; }, v[m]);
  for (; j < end; ++j) {
    const acc_t e = std::exp(z[j] - shift);
    acc_t pw = e;
    for (int m = 1; m <= K; ++m) {
      acc[m] += pw;
      pw *= e;
    }
  }
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
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(l.C, 1));
  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(l.C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t t = t_data[r];
      acc_t* s = st + 4 * r;
      if (t == ignore_index) {
        loss_data[r] = 0;
        s[0] = s[1] = s[2] = s[3] = 0;
        continue;
      }
      check_target<acc_t>(t, r, l.C, ignore_index);
      const acc_t* z = Row<acc_t>::load(z_data, r, l, buf.data());
      const acc_t zmax = row_max(z, l.C);
      std::array<acc_t, kMaxOrder + 1> R{};
      add_power_sums(z, 0, t, zmax, K, R.data());
      add_power_sums(z, t + 1, l.C, zmax, K, R.data());
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
    }
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
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(l.C, 1));
  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> zbuf(l.C), gbuf(l.C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t t = t_data[r];
      acc_t* out = Row<acc_t>::out_ptr(g_data, r, l, gbuf.data());
      if (t == ignore_index) {
        std::fill(out, out + l.C, acc_t(0));
        Row<acc_t>::store(g_data, r, l, out);
        continue;
      }
      check_target<acc_t>(t, r, l.C, ignore_index);
      const acc_t* z = Row<acc_t>::load(z_data, r, l, zbuf.data());
      const acc_t* s = st + 4 * r;
      const acc_t lse = s[0], D = s[1], Q = s[2], omp = s[3];
      const acc_t gscale = -go[r];
      const Vec vlse(lse), vD(D), vscale(gscale);
      int64_t j = 0;
      for (; j + Vec::size() <= l.C; j += Vec::size()) {
        const Vec p = (Vec::loadu(z + j) - vlse).exp();
        Vec gp(dA[K - 1]);
        for (int m = K - 2; m >= 0; --m) gp = at::vec::fmadd(gp, p, Vec(dA[m]));
        (vscale * p * (gp - vD)).store(out + j);
      }
      for (; j < l.C; ++j) {
        const acc_t p = std::exp(z[j] - lse);
        out[j] = gscale * p * (poly(dA.data(), K - 1, p) - D);
      }
      // Target: g_t - D = B'(p_t)(1 - p_t) - Q with 1 - p_t taken from the non-target sums.
      const acc_t pt = std::exp(z[t] - lse);
      out[t] = gscale * pt * (poly_derivative(B, K, pt) * omp - Q);
      Row<acc_t>::store(g_data, r, l, out);
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Soft labels: f(x, p) = sum_{i,m} c[i][m] x^i p^m with x the per-class target probability.

template <typename acc_t>
struct SoftPoly {
  const acc_t* c;
  int K;
  // Coefficients a_m(x) = sum_i c[i][m] x^i, then f = sum_m a_m p^m and g = sum_m m a_m p^(m-1).
  template <typename T>
  inline void eval(T x, T p, T& f, T& g) const {
    T fa = T(0), ga = T(0);
    for (int m = K; m >= 0; --m) {
      T a = T(c[K * (K + 1) + m]);
      for (int i = K - 1; i >= 0; --i) a = a * x + T(c[i * (K + 1) + m]);
      fa = fa * p + a;
      if (m >= 1) ga = ga * p + a * T(acc_t(m));
    }
    f = fa;
    g = ga;
  }
};

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
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(l.C, 1));
  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> zbuf(l.C), xbuf(l.C);
    for (int64_t r = begin; r < end; ++r) {
      const acc_t* z = Row<acc_t>::load(z_data, r, l, zbuf.data());
      const acc_t* x = Row<acc_t>::load(x_data, r, l, xbuf.data());
      const acc_t zmax = row_max(z, l.C);
      std::array<acc_t, kMaxOrder + 1> R{};
      add_power_sums(z, 0, l.C, zmax, 1, R.data());
      const acc_t lse = zmax + std::log(R[1]);
      Vec vf(acc_t(0)), vd(acc_t(0));
      const Vec vlse(lse);
      int64_t j = 0;
      for (; j + Vec::size() <= l.C; j += Vec::size()) {
        const Vec p = (Vec::loadu(z + j) - vlse).exp();
        Vec f, g;
        P.eval(Vec::loadu(x + j), p, f, g);
        vf = vf + f;
        vd = vd + g * p;
      }
      auto sum = [](Vec a, Vec b) { return a + b; };
      acc_t fsum = at::vec::vec_reduce_all<acc_t>(sum, vf), dsum = at::vec::vec_reduce_all<acc_t>(sum, vd);
      for (; j < l.C; ++j) {
        const acc_t p = std::exp(z[j] - lse);
        acc_t f, g;
        P.eval(x[j], p, f, g);
        fsum += f;
        dsum += g * p;
      }
      loss_data[r] = -fsum;
      st[2 * r] = lse;
      st[2 * r + 1] = dsum;
    }
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
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(l.C, 1));
  at::parallel_for(0, l.rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> zbuf(l.C), xbuf(l.C), gbuf(l.C);
    for (int64_t r = begin; r < end; ++r) {
      const acc_t* z = Row<acc_t>::load(z_data, r, l, zbuf.data());
      const acc_t* x = Row<acc_t>::load(x_data, r, l, xbuf.data());
      acc_t* out = Row<acc_t>::out_ptr(g_data, r, l, gbuf.data());
      const acc_t lse = st[2 * r], D = st[2 * r + 1], gscale = -go[r];
      const Vec vlse(lse), vD(D), vscale(gscale);
      int64_t j = 0;
      for (; j + Vec::size() <= l.C; j += Vec::size()) {
        const Vec p = (Vec::loadu(z + j) - vlse).exp();
        Vec f, g;
        P.eval(Vec::loadu(x + j), p, f, g);
        (vscale * p * (g - vD)).store(out + j);
      }
      for (; j < l.C; ++j) {
        const acc_t p = std::exp(z[j] - lse);
        acc_t f, g;
        P.eval(x[j], p, f, g);
        out[j] = gscale * p * (g - D);
      }
      Row<acc_t>::store(g_data, r, l, out);
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

