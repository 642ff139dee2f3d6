// CPU ops of the Taylor loss: argument checks, output allocation, and the choice of the kernel build
// (AVX-512, AVX2 or portable) for this CPU, made once at load time.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

#include "../checks.h"

namespace taylorglo {

#define TAYLORGLO_DECLARE_KERNELS(NS)                                                                        \
  namespace NS {                                                                                             \
  void hard_forward(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, at::Tensor&, at::Tensor&, \
                    const RowLayout&, int);                                                                  \
  void hard_backward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,              \
                     const at::Tensor&, int64_t, at::Tensor&, const RowLayout&, int);                        \
  void soft_forward(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, at::Tensor&,        \
                    const RowLayout&, int);                                                                  \
  void soft_backward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,              \
                     const at::Tensor&, at::Tensor&, const RowLayout&, int);                                 \
  }

TAYLORGLO_DECLARE_KERNELS(cpu_default)
#if defined(__x86_64__) && defined(__GNUC__)
TAYLORGLO_DECLARE_KERNELS(cpu_avx2)
TAYLORGLO_DECLARE_KERNELS(cpu_avx512)
#endif

namespace {

struct Kernels {
  decltype(&cpu_default::hard_forward) hard_forward;
  decltype(&cpu_default::hard_backward) hard_backward;
  decltype(&cpu_default::soft_forward) soft_forward;
  decltype(&cpu_default::soft_backward) soft_backward;
  const char* name;
};

// TAYLORGLO_CPU_CAPABILITY=default|avx2|avx512 caps the choice (as ATEN_CPU_CAPABILITY does for ATen).
Kernels select_kernels() {
  const char* cap = std::getenv("TAYLORGLO_CPU_CAPABILITY");
  const std::string want = cap ? cap : "";
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512 && (want.empty() || want == "avx512"))
    return {cpu_avx512::hard_forward, cpu_avx512::hard_backward, cpu_avx512::soft_forward, cpu_avx512::soft_backward,
            "avx512"};
  if (avx2 && want != "default")
    return {cpu_avx2::hard_forward, cpu_avx2::hard_backward, cpu_avx2::soft_forward, cpu_avx2::soft_backward, "avx2"};
#endif
  return {cpu_default::hard_forward, cpu_default::hard_backward, cpu_default::soft_forward,
          cpu_default::soft_backward, "default"};
}

const Kernels& kernels() {
  static const Kernels k = select_kernels();
  return k;
}

std::tuple<at::Tensor, at::Tensor> hard_forward_cpu(const at::Tensor& logits, const at::Tensor& target,
                                                    const at::Tensor& coef, int64_t ignore_index) {
  const OpArgs a = check_forward_args(logits, target, coef, /*hard=*/true);
  auto out = forward_outputs(a);
  if (a.l.rows > 0)
    kernels().hard_forward(a.logits, a.target, a.coef, ignore_index, std::get<0>(out), std::get<1>(out), a.l, a.K);
  return out;
}

at::Tensor hard_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                             const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index) {
  const OpArgs a = check_backward_args(grad_loss, logits, target, coef, stats, /*hard=*/true);
  at::Tensor grad = at::empty_like(a.logits, at::MemoryFormat::Contiguous);
  if (a.l.rows > 0 && a.l.C > 0)
    kernels().hard_backward(a.grad_loss, a.logits, a.target, a.coef, a.stats, ignore_index, grad, a.l, a.K);
  return grad;
}

std::tuple<at::Tensor, at::Tensor> soft_forward_cpu(const at::Tensor& logits, const at::Tensor& target,
                                                    const at::Tensor& coef) {
  const OpArgs a = check_forward_args(logits, target, coef, /*hard=*/false);
  auto out = forward_outputs(a);
  if (a.l.rows > 0) kernels().soft_forward(a.logits, a.target, a.coef, std::get<0>(out), std::get<1>(out), a.l, a.K);
  return out;
}

at::Tensor soft_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                             const at::Tensor& coef, const at::Tensor& stats) {
  const OpArgs a = check_backward_args(grad_loss, logits, target, coef, stats, /*hard=*/false);
  at::Tensor grad = at::empty_like(a.logits, at::MemoryFormat::Contiguous);
  if (a.l.rows > 0 && a.l.C > 0)
    kernels().soft_backward(a.grad_loss, a.logits, a.target, a.coef, a.stats, grad, a.l, a.K);
  return grad;
}

std::string cpu_capability() { return kernels().name; }

}  // namespace

TORCH_LIBRARY_IMPL(taylorglo, CPU, m) {
  m.impl("hard_forward", &hard_forward_cpu);
  m.impl("hard_backward", &hard_backward_cpu);
  m.impl("soft_forward", &soft_forward_cpu);
  m.impl("soft_backward", &soft_backward_cpu);
}

TORCH_LIBRARY_FRAGMENT(taylorglo, m) {
  m.def("cpu_capability() -> str", [] { return cpu_capability(); });
}

}  // namespace taylorglo
