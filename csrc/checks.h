// Argument checks shared by the CPU and CUDA kernels: every message names the argument and the value.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <tuple>
#include <vector>

namespace taylorglo {

// Largest polynomial order the fused kernels handle; the Python side falls back beyond it.
constexpr int kMaxOrder = 12;

struct RowLayout {
  int64_t rows;   // number of positions: N * d1 * ... * dk
  int64_t C;      // classes (dim 1)
  int64_t inner;  // d1 * ... * dk: stride between consecutive classes of one row
};

// The forward ops' per-row statistics, a (width, rows) tensor: statistic q of row r at
// data[q * rows + r], so that neighbouring rows (a CPU lane tile, neighbouring CUDA threads) read
// and write each statistic together.
template <typename acc_t>
struct RowStats {
  acc_t* data;
  int64_t rows;
  C10_HOST_DEVICE acc_t* column(int q) const { return data + q * rows; }
  C10_HOST_DEVICE acc_t& operator()(int q, int64_t r) const { return data[q * rows + r]; }
};

inline RowLayout check_logits(const at::Tensor& logits) {
  TORCH_CHECK(logits.dim() >= 2, "taylorglo: logits must have shape (N, C, ...), got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "taylorglo: logits must be float64, float32, float16 or bfloat16, got ", logits.scalar_type());
  TORCH_CHECK(logits.is_contiguous(), "taylorglo: logits must be contiguous");
  RowLayout l;
  l.C = logits.size(1);
  l.inner = 1;
  for (int64_t d = 2; d < logits.dim(); ++d) l.inner *= logits.size(d);
  l.rows = logits.size(0) * l.inner;
  TORCH_CHECK(l.C >= 1 || l.rows == 0, "taylorglo: logits need at least one class, got shape ", logits.sizes());
  return l;
}

inline at::ScalarType acc_type(const at::Tensor& logits) {
  return logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline int check_coef(const at::Tensor& coef, const at::Tensor& logits, bool hard) {
  TORCH_CHECK(coef.dim() == 2, "taylorglo: coef must be 2-d, got shape ", coef.sizes());
  TORCH_CHECK(coef.scalar_type() == acc_type(logits), "taylorglo: coef must be ", acc_type(logits),
              " for ", logits.scalar_type(), " logits, got ", coef.scalar_type());
  TORCH_CHECK(coef.device() == logits.device(), "taylorglo: coef is on ", coef.device(), " but logits on ",
              logits.device());
  TORCH_CHECK(coef.is_contiguous(), "taylorglo: coef must be contiguous");
  const int K = static_cast<int>(coef.size(1)) - 1;
  TORCH_CHECK(K >= 1 && K <= kMaxOrder, "taylorglo: polynomial order must be in [1, ", kMaxOrder, "], got ", K);
  if (hard) {
    TORCH_CHECK(coef.size(0) == 2, "taylorglo: hard-label coef must have shape (2, K+1), got ", coef.sizes());
  } else {
    TORCH_CHECK(coef.size(0) == K + 1, "taylorglo: soft-label coef must have shape (K+1, K+1), got ",
                coef.sizes());
  }
  return K;
}

inline void check_hard_target(const at::Tensor& target, const at::Tensor& logits) {
  TORCH_CHECK(target.scalar_type() == at::kLong, "taylorglo: class-index target must be int64, got ",
              target.scalar_type());
  TORCH_CHECK(target.device() == logits.device(), "taylorglo: target is on ", target.device(), " but logits on ",
              logits.device());
  TORCH_CHECK(target.is_contiguous(), "taylorglo: target must be contiguous");
  bool ok = target.dim() == logits.dim() - 1 && target.size(0) == logits.size(0);
  for (int64_t d = 2; ok && d < logits.dim(); ++d) ok = target.size(d - 1) == logits.size(d);
  TORCH_CHECK(ok, "taylorglo: target of shape ", target.sizes(), " does not match logits of shape ", logits.sizes(),
              " (expected the logits' shape without dim 1)");
}

inline void check_soft_target(const at::Tensor& target, const at::Tensor& logits) {
  TORCH_CHECK(target.sizes() == logits.sizes(), "taylorglo: soft target of shape ", target.sizes(),
              " must match logits of shape ", logits.sizes());
  TORCH_CHECK(target.scalar_type() == logits.scalar_type(), "taylorglo: soft target must be ",
              logits.scalar_type(), " like the logits, got ", target.scalar_type());
  TORCH_CHECK(target.device() == logits.device(), "taylorglo: target is on ", target.device(), " but logits on ",
              logits.device());
  TORCH_CHECK(target.is_contiguous(), "taylorglo: target must be contiguous");
}

inline void check_stats(const at::Tensor& stats, const RowLayout& l, int64_t width, const at::Tensor& logits) {
  TORCH_CHECK(stats.dim() == 2 && stats.size(0) == width && stats.size(1) == l.rows,
              "taylorglo: stats must have shape (", width, ", ", l.rows, "), got ", stats.sizes());
  TORCH_CHECK(stats.scalar_type() == acc_type(logits) && stats.is_contiguous() && stats.device() == logits.device(),
              "taylorglo: stats must be a contiguous ", acc_type(logits), " tensor on ", logits.device());
}

inline void check_grad_loss(const at::Tensor& grad, const RowLayout& l, const at::Tensor& logits) {
  TORCH_CHECK(grad.numel() == l.rows, "taylorglo: grad_loss must have one value per position (", l.rows,
              "), got shape ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == acc_type(logits) && grad.device() == logits.device(),
              "taylorglo: grad_loss must be ", acc_type(logits), " on ", logits.device(), ", got ",
              grad.scalar_type(), " on ", grad.device());
}

inline std::vector<int64_t> loss_shape(const at::Tensor& logits) {
  std::vector<int64_t> shape;
  shape.push_back(logits.size(0));
  for (int64_t d = 2; d < logits.dim(); ++d) shape.push_back(logits.size(d));
  return shape;
}

// The validated, contiguous arguments of one op call (CPU and CUDA entry points share these checks).
struct OpArgs {
  at::Tensor grad_loss, logits, target, coef, stats;
  RowLayout l;
  int K;
  bool hard;
  int64_t stats_width() const { return hard ? 5 : 3; }  // see the op contract in taylor_loss.cpp
};

inline OpArgs check_forward_args(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                                 bool hard) {
  OpArgs a;
  a.hard = hard;
  a.logits = logits.contiguous();
  a.target = target.contiguous();
  a.coef = coef.contiguous();
  a.l = check_logits(a.logits);
  if (hard) {
    check_hard_target(a.target, a.logits);
  } else {
    check_soft_target(a.target, a.logits);
  }
  a.K = check_coef(a.coef, a.logits, hard);
  return a;
}

inline OpArgs check_backward_args(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                                  const at::Tensor& coef, const at::Tensor& stats, bool hard) {
  OpArgs a = check_forward_args(logits, target, coef, hard);
  a.grad_loss = grad_loss.contiguous();
  a.stats = stats;
  check_stats(a.stats, a.l, a.stats_width(), a.logits);
  check_grad_loss(a.grad_loss, a.l, a.logits);
  return a;
}

// Per-position loss (the logits' shape without dim 1) and per-row statistics, in the accumulation type.
inline std::tuple<at::Tensor, at::Tensor> forward_outputs(const OpArgs& a) {
  const auto opts = a.logits.options().dtype(acc_type(a.logits));
  return {at::empty(loss_shape(a.logits), opts), at::empty({a.stats_width(), a.l.rows}, opts)};
}

}  // namespace taylorglo
