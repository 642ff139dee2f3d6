// CUDA ops of the Taylor loss: the registration of the kernels of taylor_loss_kernel.cu (which
// includes only ATen and c10 headers), and two ops that read the launch table (launch.h) for the
// tests: taylorglo::cuda_launch_shape, the row an input takes, and taylorglo::cuda_launch_paths.
// Compiled by the host compiler, only when the extension is built with CUDA.

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "launch.h"

namespace taylorglo {
namespace cuda {

std::tuple<at::Tensor, at::Tensor> hard_forward(const at::Tensor& logits, const at::Tensor& target,
                                                const at::Tensor& coef, int64_t ignore_index);
at::Tensor hard_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                         const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index);
std::tuple<at::Tensor, at::Tensor> soft_forward(const at::Tensor& logits, const at::Tensor& target,
                                                const at::Tensor& coef);
at::Tensor soft_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                         const at::Tensor& coef, const at::Tensor& stats);

namespace {

// (path, threads per row, threads per block) of the launch for `rows` positions of `classes` classes
// whose classes are `inner` apart (inner > 1: an N-d input).
std::tuple<std::string, int64_t, int64_t> launch_shape(int64_t rows, int64_t classes, int64_t inner) {
  TORCH_CHECK(rows >= 0 && classes >= 1 && inner >= 1, "taylorglo: cuda_launch_shape needs rows >= 0, classes >= 1 "
              "and inner >= 1, got ", rows, ", ", classes, ", ", inner);
  const LaunchConfig c = launch_config(RowLayout{rows, classes, inner});
  return {c.shape->path, c.shape->group, c.shape->threads};
}

// The table's paths, in its order.
std::vector<std::string> launch_paths() {
  std::vector<std::string> paths;
  for (const LaunchShape& s : kLaunchTable) paths.emplace_back(s.path);
  return paths;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(taylorglo, CUDA, m) {
  m.impl("hard_forward", &cuda::hard_forward);
  m.impl("hard_backward", &cuda::hard_backward);
  m.impl("soft_forward", &cuda::soft_forward);
  m.impl("soft_backward", &cuda::soft_backward);
}

TORCH_LIBRARY_FRAGMENT(taylorglo, m) {
  m.def("cuda_launch_shape(int rows, int classes, int inner) -> (str, int, int)", &cuda::launch_shape);
  m.def("cuda_launch_paths() -> str[]", &cuda::launch_paths);
}

}  // namespace taylorglo
