// Vector I/O of the CPU kernels (part of taylor_loss_kernel.h; compiled once per CPU capability in its
// namespace TAYLORGLO_CPU_NS): loads and stores of up to one at::vec::Vectorized of the accumulation
// type acc_t from and to memory of the logits' type scalar_t (16-bit values converted in registers),
// a row map, exp and a horizontal sum.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <limits>
#include <type_traits>

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

using at::vec::Vectorized;

template <typename acc_t>
constexpr acc_t kNaN = std::numeric_limits<acc_t>::quiet_NaN();

template <typename scalar_t>
constexpr bool kIs16Bit = std::is_same_v<scalar_t, c10::BFloat16> || std::is_same_v<scalar_t, c10::Half>;

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

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo
