// The Taylor loss's arithmetic, written once for the CPU and CUDA kernels (see taylor_loss.cpp for the
// math and the op contract): polynomial evaluation, the soft-label polynomial f(x, p), and the finish
// of a hard-label row from its power sums.
//
// Every function is a C10_HOST_DEVICE template over T, a scalar (float, double: CPU rows, CUDA
// threads) or a vector of them (at::vec::Vectorized: CPU lane tiles and row vectors). T needs
// +, -, *, /, construction from a scalar, and fmadd(a, b, c) = a * b + c: for Vectorized it is
// at::vec::fmadd (found by argument-dependent lookup; fused where the CPU has FMA), for scalars the
// overloads below: a * b + c unfused on the host, as the CPU row kernels always computed it, and
// fused on the device, as nvcc contracts it.
//
// Only c10 headers: the .cu file includes this header too. Everything lives in an anonymous
// namespace: the CPU kernels are compiled once per capability (default, AVX2, AVX-512), and each
// build must keep its own copy of every function here, compiled for its own instruction set (one
// shared inline copy, picked by the linker from the AVX-512 build, would run on CPUs without it).
// So include this header only where the kernels are compiled (inside the capability's target
// pragma), never from a header that is included before it.

#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TAYLORGLO_UNROLL _Pragma("unroll")
#else
#define TAYLORGLO_UNROLL _Pragma("GCC unroll 16")
#endif

namespace taylorglo {
namespace {

// ------------------------------------------------------------------------------------------------
// The polynomial order K: a compile-time constant (KC > 0: loops over the powers unroll and their
// values stay in registers) or a run-time value of at most KMAX (KC == 0). Loops over arrays that
// must stay in registers (the power sums R_m, CUDA's copy of the coefficients) run to the
// compile-time bound kMax and skip the powers above K: such an array is then indexed by constants
// only once the loop is unrolled.

template <int KC, int KMAX = KC>
struct Order {
  static_assert(KC >= 0 && KMAX >= 1 && (KC == 0 || KC == KMAX), "Order<K> or Order<0, KMAX>");
  static constexpr int kMax = KMAX;
  int k;
  C10_HOST_DEVICE constexpr int operator()() const {
    if constexpr (KC > 0) {
      return KC;
    } else {
      return k;
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Scalar multiply-add (vector types bring their own fmadd).

C10_HOST_DEVICE inline float fmadd(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

C10_HOST_DEVICE inline double fmadd(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return fma(a, b, c);
#else
  return a * b + c;
#endif
}

// ------------------------------------------------------------------------------------------------
// Polynomials in p with coefficients c[0..K] (a pointer or an array; c[m] converts to T), by
// Horner's rule. The loops run over the compile-time bound, so c may be a register array.

// sum_{m=0..n} c_m p^m for n <= KMAX.
template <int KMAX, typename T, typename Coef>
C10_HOST_DEVICE C10_ALWAYS_INLINE T horner(const Coef& c, int n, const T& p) {
  T r(c[0]);
  TAYLORGLO_UNROLL
  for (int m = KMAX; m >= 0; --m) {
    if (m == n) {
      r = T(c[m]);
    } else if (m < n) {
      r = fmadd(r, p, T(c[m]));
    }
  }
  return r;
}

// sum_{m=0..K} c_m p^m
template <typename OrderT, typename T, typename Coef>
C10_HOST_DEVICE C10_ALWAYS_INLINE T poly(const Coef& c, OrderT ord, const T& p) {
  return horner<OrderT::kMax>(c, ord(), p);
}

// sum_{m=1..K} m c_m p^(m-1)
template <typename OrderT, typename T, typename Coef>
C10_HOST_DEVICE C10_ALWAYS_INLINE T poly_derivative(const Coef& c, OrderT ord, const T& p) {
  const int K = ord();
  T r(c[0]);
  TAYLORGLO_UNROLL
  for (int m = OrderT::kMax; m >= 1; --m) {
    if (m == K) {
      r = T(decltype(c[m] + c[m])(m) * c[m]);
    } else if (m < K) {
      r = fmadd(r, p, T(decltype(c[m] + c[m])(m) * c[m]));
    }
  }
  return r;
}

// ------------------------------------------------------------------------------------------------
// Hard labels. Coefficients: A (non-target classes) and B (target class), each of length K + 1, so
// f(x_off, p) = A(p) and f(x_on, p) = B(p). With p = softmax(z) and target t, the row's power sums
// R_m = sum_{j != t} e_j^m over the non-target classes (e_j = exp(z_j - M), M the row max) and the
// target's e_t give everything the forward stores: total = R_1 + e_t, S_m = R_m / total^m, and
//   loss = -(sum_{j != t} A(p_j) + B(p_t)) = -(A_0 (C - 1) + sum_{m>=1} A_m S_m + B(p_t)),
//   Q = sum_{j != t} A'(p_j) p_j = sum_m m A_m S_m,  D = Q + B'(p_t) p_t,  1 - p_t = R_1 / total
// (1 - p_t from the non-target sums, never by cancellation).

template <typename T>
struct HardRow {
  T value;  // sum_c f(x_c, p_c): the loss is its negative
  T inv;    // 1 / total
  T D, Q;
  T one_minus_pt;
};

// R[1..K]: the power sums (an array indexed by m; R[0] unused).
template <typename OrderT, typename T, typename Scalar, typename Sums>
C10_HOST_DEVICE C10_ALWAYS_INLINE HardRow<T> hard_row_finish(const Sums& R, const T& e_t, const Scalar* A,
                                                              const Scalar* B, int64_t C, OrderT ord) {
  const int K = ord();
  HardRow<T> out;
  out.inv = T(Scalar(1)) / (R[1] + e_t);
  T value(A[0] * Scalar(C - 1)), Q(Scalar(0)), scale(Scalar(1));
  TAYLORGLO_UNROLL
  for (int m = 1; m <= OrderT::kMax; ++m) {
    if (m <= K) {
      scale = scale * out.inv;
      const T S = R[m] * scale;
      value = fmadd(T(A[m]), S, value);
      Q = fmadd(T(Scalar(m) * A[m]), S, Q);
    }
  }
  const T pt = e_t * out.inv;
  out.value = value + poly(B, ord, pt);
  out.D = fmadd(poly_derivative(B, ord, pt), pt, Q);
  out.Q = Q;
  out.one_minus_pt = R[1] * out.inv;
  return out;
}

// The backward: dL/dz_j = -grad_loss p_j (g_j - D) with g = df/dp. For a non-target class
// g_j - D = A'(p_j) - D, with A' = sum_{m<K} dA_m p^m from hard_slope_coefficients; for the target
// g_t - D = B'(p_t) (1 - p_t) - Q  (D - B'(p_t) p_t = Q, so the two terms in p_t cancel exactly
// instead of in floating point).

// dA_m = (m + 1) A_{m+1} for m < K, 0 above (dA: an array of at least kMax + 1).
template <typename OrderT, typename Scalar, typename Out>
C10_HOST_DEVICE C10_ALWAYS_INLINE void hard_slope_coefficients(const Scalar* A, OrderT ord, Out& dA) {
  TAYLORGLO_UNROLL
  for (int m = 0; m <= OrderT::kMax; ++m) dA[m] = m < ord() ? Scalar(m + 1) * A[m + 1] : Scalar(0);
}

template <typename OrderT, typename T, typename Coef>
C10_HOST_DEVICE C10_ALWAYS_INLINE T hard_slope(const Coef& dA, OrderT ord, const T& p, const T& D) {
  return horner<OrderT::kMax>(dA, ord() - 1, p) - D;
}

template <typename OrderT, typename T, typename Scalar>
C10_HOST_DEVICE C10_ALWAYS_INLINE T hard_target_slope(const Scalar* B, OrderT ord, const T& p, const T& one_minus_pt,
                                                      const T& Q) {
  return poly_derivative(B, ord, p) * one_minus_pt - Q;
}

// ------------------------------------------------------------------------------------------------
// Soft labels: f(x, p) = sum_{i,m} c[i][m] x^i p^m with x the class's target probability, c a
// (K+1, K+1) row-major table. f has total degree K, so f = sum_m a_m(x) p^m with
// a_m(x) = sum_{i <= K - m} c[i][m] x^i: (K+1)(K+2)/2 multiply-adds, the entries i + m > K unread.

template <typename OrderT, typename T, typename Scalar>
C10_HOST_DEVICE C10_ALWAYS_INLINE T soft_coefficient(const Scalar* c, OrderT ord, int m, const T& x) {
  const int K = ord();
  T a(c[(K - m) * (K + 1) + m]);
  for (int i = K - m - 1; i >= 0; --i) a = fmadd(a, x, T(c[i * (K + 1) + m]));
  return a;
}

// f and g = df/dp together (Horner's rule for a polynomial and its derivative).
template <typename OrderT, typename T, typename Scalar>
C10_HOST_DEVICE C10_ALWAYS_INLINE void soft_eval(const Scalar* c, OrderT ord, const T& x, const T& p, T& f, T& g) {
  const int K = ord();
  T fa = soft_coefficient(c, ord, K, x), ga(Scalar(0));
  for (int m = K - 1; m >= 0; --m) {
    ga = fmadd(ga, p, fa);
    fa = fmadd(fa, p, soft_coefficient(c, ord, m, x));
  }
  f = fa;
  g = ga;
}

// g alone from dc[i][m] = m c[i][m] (soft_scaled_by_power): K(K+1)/2 multiply-adds fewer than f and g.
template <typename OrderT, typename T, typename Scalar>
C10_HOST_DEVICE C10_ALWAYS_INLINE T soft_derivative(const Scalar* dc, OrderT ord, const T& x, const T& p) {
  const int K = ord();
  T ga = soft_coefficient(dc, ord, K, x);
  for (int m = K - 1; m >= 1; --m) ga = fmadd(ga, p, soft_coefficient(dc, ord, m, x));
  return ga;
}

// dc[i][m] = m c[i][m] for soft_derivative, into out ((K+1)^2 values).
template <typename Scalar>
C10_HOST_DEVICE inline void soft_scaled_by_power(const Scalar* c, int K, Scalar* out) {
  for (int i = 0; i <= K; ++i)
    for (int m = 0; m <= K; ++m) out[i * (K + 1) + m] = Scalar(m) * c[i * (K + 1) + m];
}

}  // namespace
}  // namespace taylorglo
