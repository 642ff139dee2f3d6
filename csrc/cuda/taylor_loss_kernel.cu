// CUDA kernels of the Taylor loss (see ../taylor_loss.cpp for the math and the op contract).
//
// Memory traffic aims at the floor of a fused loss: the forward reads every logit once, the backward
// reads every logit once and writes every gradient once (3 x element size per element in all).
//  - Hard-label forward: one pass with an online power-sum state per thread: the running max M and
//    R_m = sum e_j^m (m = 1..K, e_j = exp(z_j - M)) over non-target classes, rescaled by
//    exp(M_old - M_new)^m when the max grows, then merged across the row (warp shuffles, then shared
//    memory across warps). The target class is folded in at the end, so 1 - p_t = R_1 / total is never
//    formed by cancellation.
//  - Backward: one pass; p_j = exp(z_j - M) * (1/S) from the saved row max M and inverse sum 1/S,
//    as the forward computes it (a float32 lse would lose up to 1e-3 of p for logits near 3e4).
//  - Soft labels: the forward needs p before evaluating f(x, p), so it makes two passes.
// The arithmetic of a row (polynomials, the hard-label row finish) is taylor_math.h's, shared with
// the CPU kernels. Launch geometry: the table in launch.h (a warp per row for C <= 2048, a 512-thread
// block per row beyond, a thread per row for N-d inputs, whose classes are strided by `inner` so that
// neighbouring threads read neighbouring addresses); the kernels are compiled for its groups only. All
// index arithmetic is 64-bit; kernels run on the current stream and never sync the host. Accumulation
// is in float (double for float64 inputs); out-of-range labels trip a device-side assert naming the
// problem. The ops are registered in taylor_loss_cuda.cpp: this file includes only ATen and c10.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "../checks.h"
#include "../taylor_math.h"
#include "launch.h"

namespace taylorglo {
namespace cuda {
namespace {

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }

template <typename acc_t>
__device__ __forceinline__ acc_t neg_inf() {
  return -std::numeric_limits<acc_t>::infinity();
}

// Online state of max and power sums: sum_j exp(m (z_j - M)) for m = 1..K.
template <typename acc_t, int KMAX>
struct PowerSums {
  acc_t M;
  acc_t R[KMAX + 1];

  __device__ __forceinline__ void init() {
    M = neg_inf<acc_t>();
#pragma unroll
    for (int m = 0; m <= KMAX; ++m) R[m] = acc_t(0);
  }

  __device__ __forceinline__ void rescale(acc_t s, int K) {
    acc_t sp = s;
#pragma unroll
    for (int m = 1; m <= KMAX; ++m) {
      if (m <= K) {
        R[m] *= sp;
        sp *= s;
      }
    }
  }

  __device__ __forceinline__ void add(acc_t z, int K) {
    if (z > M) {
      rescale(dev_exp(M - z), K);  // exp(-inf) = 0 on the first element
      M = z;
    }
    // -inf logits add nothing (also while M is still -inf, where z - M would be NaN); NaN or +inf
    // logits make e NaN, and the loss with it.
    const acc_t e = z == neg_inf<acc_t>() ? acc_t(0) : dev_exp(z - M);
    acc_t pw = e;
#pragma unroll
    for (int m = 1; m <= KMAX; ++m) {
      if (m <= K) {
        R[m] += pw;
        pw *= e;
      }
    }
  }

  // No early exit for empty sides: a side whose M is -inf (no finite logit yet) is scaled by 0, so
  // the NaN of a NaN-only side still propagates (R * 0 = NaN).
  __device__ __forceinline__ void merge(acc_t M2, const acc_t* R2, int K) {
    const acc_t Mn = M > M2 ? M : M2;
    const acc_t s1 = M == neg_inf<acc_t>() ? acc_t(0) : dev_exp(M - Mn);
    const acc_t s2 = M2 == neg_inf<acc_t>() ? acc_t(0) : dev_exp(M2 - Mn);
    acc_t p1 = s1, p2 = s2;
#pragma unroll
    for (int m = 1; m <= KMAX; ++m) {
      if (m <= K) {
        R[m] = R[m] * p1 + R2[m] * p2;
        p1 *= s1;
        p2 *= s2;
      }
    }
    M = Mn;
  }
};

// Butterfly reduction of a PowerSums over GROUP threads (a group of launch.h's table); every thread
// of the group ends with the row's state. `smem` holds (KMAX + 2) values per warp of the block.
template <typename acc_t, int KMAX, int GROUP>
__device__ __forceinline__ void group_reduce(PowerSums<acc_t, KMAX>& s, int K, acc_t* smem) {
  if constexpr (GROUP == 1) {
    return;
  } else {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      acc_t R2[KMAX + 1];
      const acc_t M2 = __shfl_xor_sync(0xffffffffu, s.M, offset);
#pragma unroll
      for (int m = 1; m <= KMAX; ++m) R2[m] = __shfl_xor_sync(0xffffffffu, s.R[m], offset);
      s.merge(M2, R2, K);
    }
    if constexpr (GROUP > 32) {
      constexpr int kWarps = GROUP / 32;
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      if (lane == 0) {
        smem[warp * (KMAX + 2)] = s.M;
#pragma unroll
        for (int m = 1; m <= KMAX; ++m) smem[warp * (KMAX + 2) + m] = s.R[m];
      }
      __syncthreads();
      s.init();
#pragma unroll 1
      for (int w = 0; w < kWarps; ++w) s.merge(smem[w * (KMAX + 2)], smem + w * (KMAX + 2), K);
      __syncthreads();  // smem may be reused by the caller
    }
  }
}

template <typename acc_t, int GROUP>
__device__ __forceinline__ acc_t group_sum(acc_t v, acc_t* smem) {
  if constexpr (GROUP == 1) {
    return v;
  } else {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if constexpr (GROUP > 32) {
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      if (lane == 0) smem[warp] = v;
      __syncthreads();
      v = acc_t(0);
#pragma unroll 1
      for (int w = 0; w < GROUP / 32; ++w) v += smem[w];
      __syncthreads();
    }
    return v;
  }
}

struct RowIndex {
  int64_t row;   // position index in [0, rows)
  int64_t base;  // offset of class 0 of this row
  int lane;      // thread index within the row's group
  bool valid;
};

template <int GROUP>
__device__ __forceinline__ RowIndex row_index(const RowLayout l) {
  RowIndex ri;
  constexpr int kBlockRows = block_threads(GROUP) / GROUP;
  ri.row = static_cast<int64_t>(blockIdx.x) * kBlockRows + threadIdx.x / GROUP;
  ri.lane = threadIdx.x % GROUP;
  ri.valid = ri.row < l.rows;
  const int64_t o = ri.row / l.inner, i = ri.row % l.inner;
  ri.base = o * l.C * l.inner + i;
  return ri;
}

// ------------------------------------------------------------------------------------------------
// Hard labels

template <typename scalar_t, typename acc_t, int KMAX, int GROUP>
__global__ void __launch_bounds__(block_threads(GROUP))
    hard_forward_kernel(const scalar_t* __restrict__ logits, const int64_t* __restrict__ target,
                        const acc_t* __restrict__ coef, acc_t* __restrict__ loss, acc_t* __restrict__ stats,
                        const RowLayout l, const int K, const int64_t ignore_index) {
  __shared__ acc_t smem[(GROUP > 32 ? GROUP / 32 : 1) * (KMAX + 2)];
  const RowIndex ri = row_index<GROUP>(l);
  if (!ri.valid) return;  // uniform per group (GROUP <= 32 is a warp; GROUP > 32 is a block of one row)
  const int64_t t = target[ri.row];
  const RowStats<acc_t> st{stats, l.rows};
  if (t == ignore_index) {
    if (ri.lane == 0) {
      loss[ri.row] = acc_t(0);
      st(0, ri.row) = st(1, ri.row) = st(2, ri.row) = st(3, ri.row) = st(4, ri.row) = acc_t(0);
    }
    return;
  }
  CUDA_KERNEL_ASSERT(t >= 0 && t < l.C && "taylorglo: target class index out of range [0, C)");
  if (t < 0 || t >= l.C) {  // reached only where device asserts are compiled out
    constexpr acc_t kNaN = std::numeric_limits<acc_t>::quiet_NaN();
    if (ri.lane == 0) loss[ri.row] = st(0, ri.row) = st(1, ri.row) = st(2, ri.row) = st(3, ri.row) = st(4, ri.row) = kNaN;
    return;
  }

  PowerSums<acc_t, KMAX> s;
  s.init();
  for (int64_t j = ri.lane; j < l.C; j += GROUP) {
    if (j != t) s.add(static_cast<acc_t>(logits[ri.base + j * l.inner]), K);
  }
  group_reduce<acc_t, KMAX, GROUP>(s, K, smem);
  if (ri.lane != 0) return;

  // Fold in the target: total = sum_j exp(z_j - M), p_t = e_t / total, 1 - p_t = R_1 / total.
  const acc_t zt = static_cast<acc_t>(logits[ri.base + t * l.inner]);
  if (zt > s.M) {
    s.rescale(dev_exp(s.M - zt), K);
    s.M = zt;
  }
  const HardRow<acc_t> row =
      hard_row_finish(s.R, dev_exp(zt - s.M), coef, coef + (K + 1), l.C, Order<0, KMAX>{K});
  loss[ri.row] = -row.value;
  st(0, ri.row) = s.M;
  st(1, ri.row) = row.inv;
  st(2, ri.row) = row.D;
  st(3, ri.row) = row.Q;
  st(4, ri.row) = row.one_minus_pt;
}

template <typename scalar_t, typename acc_t, int KMAX, int GROUP>
__global__ void __launch_bounds__(block_threads(GROUP))
    hard_backward_kernel(const acc_t* __restrict__ grad_loss, const scalar_t* __restrict__ logits,
                         const int64_t* __restrict__ target, const acc_t* __restrict__ coef,
                         const acc_t* __restrict__ stats, scalar_t* __restrict__ grad, const RowLayout l, const int K,
                         const int64_t ignore_index) {
  const RowIndex ri = row_index<GROUP>(l);
  if (!ri.valid) return;
  const int64_t t = target[ri.row];
  if (t == ignore_index || t < 0 || t >= l.C) {
    CUDA_KERNEL_ASSERT((t == ignore_index || (t >= 0 && t < l.C)) &&
                       "taylorglo: target class index out of range [0, C)");
    for (int64_t j = ri.lane; j < l.C; j += GROUP) grad[ri.base + j * l.inner] = scalar_t(0);
    return;
  }
  const Order<0, KMAX> ord{K};
  acc_t dA[KMAX + 1];  // A' = sum_m dA_m p^m; indexed by constants only (unrolled loops): stays in registers
  hard_slope_coefficients(coef, ord, dA);
  const acc_t* B = coef + (K + 1);
  const RowStats<const acc_t> st{stats, l.rows};
  const acc_t M = st(0, ri.row), inv = st(1, ri.row), D = st(2, ri.row), Q = st(3, ri.row), omp = st(4, ri.row);
  const acc_t gscale = -grad_loss[ri.row];
  for (int64_t j = ri.lane; j < l.C; j += GROUP) {
    const int64_t off = ri.base + j * l.inner;
    const acc_t p = dev_exp(static_cast<acc_t>(logits[off]) - M) * inv;
    const acc_t g = j == t ? hard_target_slope(B, ord, p, omp, Q) : hard_slope(dA, ord, p, D);
    grad[off] = static_cast<scalar_t>(gscale * p * g);
  }
}

// ------------------------------------------------------------------------------------------------
// Soft labels: f(x, p) = sum_{i,m} c[i][m] x^i p^m, with c[i][m] = 0 for i + m > K (total degree K).

template <typename scalar_t, typename acc_t, int GROUP>
__global__ void __launch_bounds__(block_threads(GROUP))
    soft_forward_kernel(const scalar_t* __restrict__ logits, const scalar_t* __restrict__ target,
                        const acc_t* __restrict__ coef, acc_t* __restrict__ loss, acc_t* __restrict__ stats,
                        const RowLayout l, const int K) {
  __shared__ acc_t smem[(GROUP > 32 ? GROUP / 32 : 1) * 3];
  const RowIndex ri = row_index<GROUP>(l);
  if (!ri.valid) return;
  PowerSums<acc_t, 1> s;
  s.init();
  for (int64_t j = ri.lane; j < l.C; j += GROUP) s.add(static_cast<acc_t>(logits[ri.base + j * l.inner]), 1);
  group_reduce<acc_t, 1, GROUP>(s, 1, smem);
  // A row without a finite logit gets NaN statistics, as on the CPU (NaN or +inf logits make S NaN).
  const acc_t M = s.M == neg_inf<acc_t>() ? std::numeric_limits<acc_t>::quiet_NaN() : s.M;
  const acc_t inv = acc_t(1) / s.R[1];
  acc_t fsum = acc_t(0), dsum = acc_t(0);
  for (int64_t j = ri.lane; j < l.C; j += GROUP) {
    const int64_t off = ri.base + j * l.inner;
    const acc_t p = dev_exp(static_cast<acc_t>(logits[off]) - M) * inv;
    acc_t f, g;
    soft_eval(coef, Order<0, kMaxOrder>{K}, static_cast<acc_t>(target[off]), p, f, g);
    fsum += f;
    dsum += g * p;
  }
  fsum = group_sum<acc_t, GROUP>(fsum, smem);
  dsum = group_sum<acc_t, GROUP>(dsum, smem);
  if (ri.lane == 0) {
    loss[ri.row] = -fsum;
    const RowStats<acc_t> st{stats, l.rows};
    st(0, ri.row) = M;
    st(1, ri.row) = inv;
    st(2, ri.row) = dsum;
  }
}

template <typename scalar_t, typename acc_t, int GROUP>
__global__ void __launch_bounds__(block_threads(GROUP))
    soft_backward_kernel(const acc_t* __restrict__ grad_loss, const scalar_t* __restrict__ logits,
                         const scalar_t* __restrict__ target, const acc_t* __restrict__ coef,
                         const acc_t* __restrict__ stats, scalar_t* __restrict__ grad, const RowLayout l, const int K) {
  const RowIndex ri = row_index<GROUP>(l);
  if (!ri.valid) return;
  const RowStats<const acc_t> st{stats, l.rows};
  const acc_t M = st(0, ri.row), inv = st(1, ri.row), D = st(2, ri.row);
  const acc_t gscale = -grad_loss[ri.row];
  for (int64_t j = ri.lane; j < l.C; j += GROUP) {
    const int64_t off = ri.base + j * l.inner;
    const acc_t p = dev_exp(static_cast<acc_t>(logits[off]) - M) * inv;
    acc_t f, g;
    soft_eval(coef, Order<0, kMaxOrder>{K}, static_cast<acc_t>(target[off]), p, f, g);  // f unused
    grad[off] = static_cast<scalar_t>(gscale * p * (g - D));
  }
}

template <typename F>
void with_kmax(int K, F&& f) {
  if (K <= 6) {
    f(std::integral_constant<int, 6>{});
  } else {
    f(std::integral_constant<int, kMaxOrder>{});
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Op entry points (registered in taylor_loss_cuda.cpp)

// Launches `kernel` for every dtype with (scalar_t, acc_t) bound, on the current stream of the logits' device.
#define TAYLORGLO_DISPATCH(a, NAME, ...)                                                                        \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, (a).logits.scalar_type(), NAME, [&] {                \
    using acc_t = at::opmath_type<scalar_t>;                                                                    \
    const LaunchConfig cfg = launch_config((a).l);                                                              \
    auto stream = c10::cuda::getCurrentCUDAStream();                                                            \
    __VA_ARGS__();                                                                                              \
  })

std::tuple<at::Tensor, at::Tensor> hard_forward(const at::Tensor& logits, const at::Tensor& target,
                                                     const at::Tensor& coef, int64_t ignore_index) {
  const OpArgs a = check_forward_args(logits, target, coef, /*hard=*/true);
  c10::cuda::CUDAGuard guard(a.logits.device());
  auto out = forward_outputs(a);
  if (a.l.rows == 0) return out;
  TAYLORGLO_DISPATCH(a, "taylorglo_hard_forward_cuda", [&] {
    with_kmax(a.K, [&](auto kmax) {
      with_group(cfg.shape->group, [&](auto group) {
        hard_forward_kernel<scalar_t, acc_t, decltype(kmax)::value, decltype(group)::value>
            <<<cfg.blocks, cfg.shape->threads, 0, stream>>>(a.logits.data_ptr<scalar_t>(), a.target.data_ptr<int64_t>(),
                                                     a.coef.data_ptr<acc_t>(), std::get<0>(out).data_ptr<acc_t>(),
                                                     std::get<1>(out).data_ptr<acc_t>(), a.l, a.K, ignore_index);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return out;
}

at::Tensor hard_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                              const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index) {
  const OpArgs a = check_backward_args(grad_loss, logits, target, coef, stats, /*hard=*/true);
  c10::cuda::CUDAGuard guard(a.logits.device());
  at::Tensor grad = at::empty_like(a.logits, at::MemoryFormat::Contiguous);
  if (a.l.rows == 0 || a.l.C == 0) return grad;
  TAYLORGLO_DISPATCH(a, "taylorglo_hard_backward_cuda", [&] {
    with_kmax(a.K, [&](auto kmax) {
      with_group(cfg.shape->group, [&](auto group) {
        hard_backward_kernel<scalar_t, acc_t, decltype(kmax)::value, decltype(group)::value>
            <<<cfg.blocks, cfg.shape->threads, 0, stream>>>(a.grad_loss.data_ptr<acc_t>(), a.logits.data_ptr<scalar_t>(),
                                                     a.target.data_ptr<int64_t>(), a.coef.data_ptr<acc_t>(),
                                                     a.stats.data_ptr<acc_t>(), grad.data_ptr<scalar_t>(), a.l, a.K,
                                                     ignore_index);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return grad;
}

std::tuple<at::Tensor, at::Tensor> soft_forward(const at::Tensor& logits, const at::Tensor& target,
                                                     const at::Tensor& coef) {
  const OpArgs a = check_forward_args(logits, target, coef, /*hard=*/false);
  c10::cuda::CUDAGuard guard(a.logits.device());
  auto out = forward_outputs(a);
  if (a.l.rows == 0) return out;
  TAYLORGLO_DISPATCH(a, "taylorglo_soft_forward_cuda", [&] {
    with_group(cfg.shape->group, [&](auto group) {
      soft_forward_kernel<scalar_t, acc_t, decltype(group)::value><<<cfg.blocks, cfg.shape->threads, 0, stream>>>(
          a.logits.data_ptr<scalar_t>(), a.target.data_ptr<scalar_t>(), a.coef.data_ptr<acc_t>(),
          std::get<0>(out).data_ptr<acc_t>(), std::get<1>(out).data_ptr<acc_t>(), a.l, a.K);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor soft_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                              const at::Tensor& coef, const at::Tensor& stats) {
  const OpArgs a = check_backward_args(grad_loss, logits, target, coef, stats, /*hard=*/false);
  c10::cuda::CUDAGuard guard(a.logits.device());
  at::Tensor grad = at::empty_like(a.logits, at::MemoryFormat::Contiguous);
  if (a.l.rows == 0 || a.l.C == 0) return grad;
  TAYLORGLO_DISPATCH(a, "taylorglo_soft_backward_cuda", [&] {
    with_group(cfg.shape->group, [&](auto group) {
      soft_backward_kernel<scalar_t, acc_t, decltype(group)::value><<<cfg.blocks, cfg.shape->threads, 0, stream>>>(
          a.grad_loss.data_ptr<acc_t>(), a.logits.data_ptr<scalar_t>(), a.target.data_ptr<scalar_t>(),
          a.coef.data_ptr<acc_t>(), a.stats.data_ptr<acc_t>(), grad.data_ptr<scalar_t>(), a.l, a.K);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad;
}

}  // namespace cuda
}  // namespace taylorglo
