// CPU kernels of the Taylor loss (see ../taylor_loss.cpp for the math and the op contract).
//
// Every loop is vectorized with at::vec::Vectorized in the accumulation type acc_t (float for 16-bit
// and float32 inputs, double for float64); 16-bit values are converted in registers as they are
// loaded and stored. Work is split across threads with at::parallel_for. The kernels are written in
// parts, one concern each:
//
//   ../taylor_math.h  the arithmetic of a row (polynomials, the hard-label row finish), shared with
//                     the CUDA kernels, as templates over a scalar or a Vectorized
//   vec_io.h          loads and stores of vectors from and to the logits' dtype, exp, sums
//   layouts.h         how rows are walked: one row at a time (many classes), or lane tiles of
//                     neighbouring rows, strided in place (N-d inputs) or transposed into a buffer
//                     ((N, C) with few classes: forward C <= 96, backward C <= 8)
//   hard.h, soft.h    the forward and backward passes for class-index and probability targets
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
#ifndef TAYLORGLO_CPU_NS
#error "define TAYLORGLO_CPU_NS (the capability's namespace) before including taylor_loss_kernel.h"
#endif

#include "../taylor_math.h"
#include "layouts.h"
#include "vec_io.h"

namespace taylorglo {
namespace TAYLORGLO_CPU_NS {

// The orders compiled as constants (Order<K>); the others run the generic loops (Order<0, kMaxOrder>).
template <typename F>
inline void dispatch_order(int K, F&& f) {
  switch (K) {
    case 2: return f(Order<2>{2});
    case 3: return f(Order<3>{3});
    case 4: return f(Order<4>{4});
    case 5: return f(Order<5>{5});
    case 6: return f(Order<6>{6});
    default: return f(Order<0, kMaxOrder>{K});
  }
}

}  // namespace TAYLORGLO_CPU_NS
}  // namespace taylorglo

#if defined(TAYLORGLO_KERNELS_HARD)
#include "hard.h"
#else
#include "soft.h"
#endif
