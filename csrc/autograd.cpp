// Autograd of the forward ops, registered in C++ under the Autograd dispatch key (the backward of a
// Python-registered formula costs tens of microseconds per call, the whole cost of a small batch),
// and the reduced losses `hard_loss` / `soft_loss`: forward op + mean/sum reduction as one op with one
// autograd node (what taylorglo.taylor_loss calls; the reduction glue in Python cost ~12 us a call).
//
// The forward op saves its per-row statistics; the backward is one fused op for the logits' gradient.
// The gradient w.r.t. the power-basis coefficients, needed only when the loss parameters themselves
// are trained, is  d loss_row / d coef = -(sums of powers of p (and x)), computed with ATen ops.
// Everything goes through the dispatcher, so torch.compile traces these formulas with the ops' fake
// implementations (taylorglo/ops.py).

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace taylorglo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Pair = std::tuple<at::Tensor, at::Tensor>;

Pair call_hard_forward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                       int64_t ignore_index) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("taylorglo::hard_forward", "")
                       .typed<Pair(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(logits, target, coef, ignore_index);
}

at::Tensor call_hard_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                              const at::Tensor& coef, const at::Tensor& stats, int64_t ignore_index) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("taylorglo::hard_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, int64_t)>();
  return op.call(grad_loss, logits, target, coef, stats, ignore_index);
}

Pair call_soft_forward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("taylorglo::soft_forward", "")
                       .typed<Pair(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(logits, target, coef);
}

at::Tensor call_soft_backward(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                              const at::Tensor& coef, const at::Tensor& stats) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("taylorglo::soft_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&)>();
  return op.call(grad_loss, logits, target, coef, stats);
}

void check_first_order(const at::Tensor& grad_loss, const at::Tensor& logits) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (grad_loss.requires_grad() || logits.requires_grad())),
              "taylorglo: the fused Taylor-loss kernels are not twice differentiable (create_graph=True); "
              "for second-order gradients use TaylorLoss(..., backend='reference')");
}

// p as (rows, C) in the accumulation type, rows in the kernels' order: p = exp(z - M) * (1/S), as the
// kernels compute it from the statistics (M, 1/S, ...).
at::Tensor probabilities(const at::Tensor& logits, const at::Tensor& stats) {
  const at::Tensor z = logits.to(stats.scalar_type()).movedim(1, -1).reshape_symint({-1, logits.sym_size(1)});
  return at::exp(z - stats.select(0, 0).unsqueeze(1)) * stats.select(0, 1).unsqueeze(1);
}

// (..., K+1): v^0 .. v^K along a new last dimension.
at::Tensor powers(const at::Tensor& v, int64_t order) {
  return v.unsqueeze(-1).pow(at::arange(order + 1, v.options()));
}

// d loss / d logits and d loss / d coef of the hard-label loss, given the per-row grad_loss.
variable_list hard_input_grads(AutogradContext* ctx, const at::Tensor& grad_rows, int64_t ignore_index) {
  const auto saved = ctx->get_saved_variables();
  const at::Tensor &logits = saved[0], &target = saved[1], &coef = saved[2], &stats = saved[3];
  check_first_order(grad_rows, logits);
  const at::Tensor grad_loss = grad_rows.to(stats.scalar_type()).contiguous();
  at::Tensor grad_logits, grad_coef;
  if (ctx->needs_input_grad(0))
    grad_logits = call_hard_backward(grad_loss, logits, target, coef, stats, ignore_index);
  if (ctx->needs_input_grad(2)) {
    // d loss / d A_m = -sum_{c != t} p_c^m,  d loss / d B_m = -p_t^m  (ignored rows: 0).
    const int64_t order = coef.sym_size(1).guard_int(__FILE__, __LINE__) - 1;
    const at::Tensor t = target.reshape({-1});
    const at::Tensor valid = t.ne(ignore_index);
    // Ignored rows have zero statistics: exp(z - 0) * 0 would be NaN where exp(z) overflows.
    const at::Tensor p = at::where(valid.unsqueeze(1), probabilities(logits, stats), 0);
    const at::Tensor pw = powers(p, order);  // (rows, C, K+1)
    const at::Tensor tc = at::where(valid, t, at::zeros_like(t)).view({-1, 1, 1}).expand({-1, 1, order + 1});
    const at::Tensor pt_pw = pw.gather(1, tc).squeeze(1);
    const at::Tensor basis = at::stack({pw.sum(1) - pt_pw, pt_pw}, 1) * valid.view({-1, 1, 1});
    grad_coef = -at::einsum("r,rab->ab", {grad_loss.reshape({-1}), basis});
  }
  return {grad_logits, at::Tensor(), grad_coef};
}

variable_list soft_input_grads(AutogradContext* ctx, const at::Tensor& grad_rows) {
  const auto saved = ctx->get_saved_variables();
  const at::Tensor &logits = saved[0], &target = saved[1], &coef = saved[2], &stats = saved[3];
  check_first_order(grad_rows, logits);
  const at::Tensor grad_loss = grad_rows.to(stats.scalar_type()).contiguous();
  at::Tensor grad_logits, grad_coef;
  if (ctx->needs_input_grad(0)) grad_logits = call_soft_backward(grad_loss, logits, target, coef, stats);
  if (ctx->needs_input_grad(2)) {
    // d loss / d coef[i][m] = -sum_c x_c^i p_c^m.
    const int64_t order = coef.sym_size(1).guard_int(__FILE__, __LINE__) - 1;
    const at::Tensor p = probabilities(logits, stats);
    const at::Tensor x = target.to(stats.scalar_type()).movedim(1, -1).reshape_symint(p.sym_sizes());
    grad_coef = -at::einsum("r,rci,rcm->im", {grad_loss.reshape({-1}), powers(x, order), powers(p, order)});
  }
  return {grad_logits, at::Tensor(), grad_coef};
}

// Reductions as at::Reduction numbers them: 0 none, 1 mean (over non-ignored positions; 0 when there
// are none), 2 sum. Shapes are SymInts, so that torch.compile can trace these with dynamic shapes.
constexpr int64_t kNone = 0, kMean = 1, kSum = 2;

void check_reduction(int64_t reduction) {
  TORCH_CHECK(reduction == kNone || reduction == kMean || reduction == kSum,
              "taylorglo: reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
}

// The per-position loss's shape: the logits' without dim 1.
c10::SymDimVector loss_shape(const at::Tensor& logits) {
  const auto sizes = logits.sym_sizes();
  c10::SymDimVector shape{sizes[0]};
  for (size_t d = 2; d < sizes.size(); ++d) shape.push_back(sizes[d]);
  return shape;
}

// The mean's divisor with hard labels: the non-ignored positions (at least 1). Soft labels divide by
// the number of positions, which the shapes give (an undefined tensor here).
// (An int64 0-d tensor: dividing a float tensor by it keeps the float dtype, one op fewer than a cast.)
at::Tensor hard_count(const at::Tensor& target, int64_t ignore_index) {
  return target.ne(ignore_index).sum().clamp_min(1);
}

at::Tensor divide_by_count(const at::Tensor& v, const at::Tensor& count, const at::Tensor& logits) {
  if (count.defined()) return v / count;
  c10::SymInt positions = 1;
  for (const auto& d : loss_shape(logits)) positions = positions * d;
  return v / c10::Scalar(positions.max(1));
}

// The reduced loss, in the logits' dtype (accumulated in at least float32).
at::Tensor reduce(const at::Tensor& loss, int64_t reduction, const at::Tensor& count, const at::Tensor& logits) {
  at::Tensor out = loss;
  if (reduction != kNone) {
    const at::Tensor total = loss.sum();
    out = reduction == kSum ? total : divide_by_count(total, count, logits);
  }
  return out.scalar_type() == logits.scalar_type() ? out : out.to(logits.scalar_type());
}

// The per-position gradient of a reduced loss: the output's gradient spread over the positions.
at::Tensor spread(const at::Tensor& grad_out, const at::Tensor& stats, const at::Tensor& logits, int64_t reduction,
                  const at::Tensor& count) {
  if (reduction == kNone) return grad_out;
  at::Tensor g = grad_out.to(stats.scalar_type());
  if (reduction == kMean) g = divide_by_count(g, count, logits);
  return g.expand_symint(loss_shape(logits));
}

class HardForward : public torch::autograd::Function<HardForward> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target,
                               const at::Tensor& coef, int64_t ignore_index) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, stats] = call_hard_forward(logits, target, coef, ignore_index);
    ctx->save_for_backward({logits, target, coef, stats});
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->mark_non_differentiable({stats});
    return {loss, stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto out = hard_input_grads(ctx, grads[0], ctx->saved_data["ignore_index"].toInt());
    out.emplace_back();
    return out;
  }
};

class SoftForward : public torch::autograd::Function<SoftForward> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target,
                               const at::Tensor& coef) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, stats] = call_soft_forward(logits, target, coef);
    ctx->save_for_backward({logits, target, coef, stats});
    ctx->mark_non_differentiable({stats});
    return {loss, stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return soft_input_grads(ctx, grads[0]);
  }
};

class HardLoss : public torch::autograd::Function<HardLoss> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target,
                               const at::Tensor& coef, int64_t ignore_index, int64_t reduction) {
    check_reduction(reduction);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, stats] = call_hard_forward(logits, target, coef, ignore_index);
    const at::Tensor count = reduction == kMean ? hard_count(target, ignore_index) : at::Tensor();
    ctx->save_for_backward({logits, target, coef, stats, count});
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["reduction"] = reduction;
    return {reduce(loss, reduction, count, logits)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor rows =
        spread(grads[0], saved[3], saved[0], ctx->saved_data["reduction"].toInt(), saved[4]);
    auto out = hard_input_grads(ctx, rows, ctx->saved_data["ignore_index"].toInt());
    out.emplace_back();
    out.emplace_back();
    return out;
  }
};

class SoftLoss : public torch::autograd::Function<SoftLoss> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target,
                               const at::Tensor& coef, int64_t reduction) {
    check_reduction(reduction);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, stats] = call_soft_forward(logits, target, coef);
    ctx->save_for_backward({logits, target, coef, stats});
    ctx->saved_data["reduction"] = reduction;
    return {reduce(loss, reduction, at::Tensor(), logits)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor rows =
        spread(grads[0], saved[3], saved[0], ctx->saved_data["reduction"].toInt(), at::Tensor());
    auto out = soft_input_grads(ctx, rows);
    out.emplace_back();
    return out;
  }
};

Pair hard_forward_autograd(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                           int64_t ignore_index) {
  auto out = HardForward::apply(logits, target, coef, ignore_index);
  return {out[0], out[1]};
}

Pair soft_forward_autograd(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef) {
  auto out = SoftForward::apply(logits, target, coef);
  return {out[0], out[1]};
}

at::Tensor hard_loss_autograd(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                              int64_t ignore_index, int64_t reduction) {
  return HardLoss::apply(logits, target, coef, ignore_index, reduction)[0];
}

at::Tensor soft_loss_autograd(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                              int64_t reduction) {
  return SoftLoss::apply(logits, target, coef, reduction)[0];
}

// Below autograd (inference, and tracing): the forward op and the reduction.
at::Tensor hard_loss_plain(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                           int64_t ignore_index, int64_t reduction) {
  check_reduction(reduction);
  const at::Tensor loss = std::get<0>(call_hard_forward(logits, target, coef, ignore_index));
  return reduce(loss, reduction, reduction == kMean ? hard_count(target, ignore_index) : at::Tensor(), logits);
}

at::Tensor soft_loss_plain(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& coef,
                           int64_t reduction) {
  check_reduction(reduction);
  const at::Tensor loss = std::get<0>(call_soft_forward(logits, target, coef));
  return reduce(loss, reduction, at::Tensor(), logits);
}

}  // namespace

TORCH_LIBRARY_IMPL(taylorglo, CompositeExplicitAutograd, m) {
  m.impl("hard_loss", &hard_loss_plain);
  m.impl("soft_loss", &soft_loss_plain);
}

TORCH_LIBRARY_IMPL(taylorglo, Autograd, m) {
  m.impl("hard_forward", &hard_forward_autograd);
  m.impl("soft_forward", &soft_forward_autograd);
  m.impl("hard_loss", &hard_loss_autograd);
  m.impl("soft_loss", &soft_loss_autograd);
}

}  // namespace taylorglo
