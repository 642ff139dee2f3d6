// Autograd of the forward ops, registered in C++ under the Autograd dispatch key (the backward of a
// Python-registered formula costs tens of microseconds per call, the whole cost of a small batch).
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

// p as (rows, C) in the accumulation type, rows in the kernels' order: p = exp(z - lse).
at::Tensor probabilities(const at::Tensor& logits, const at::Tensor& stats) {
  const at::Tensor z = logits.to(stats.scalar_type()).movedim(1, -1).reshape({-1, logits.size(1)});
  return at::exp(z - stats.select(1, 0).unsqueeze(1));
}

// (..., K+1): v^0 .. v^K along a new last dimension.
at::Tensor powers(const at::Tensor& v, int64_t order) {
  return v.unsqueeze(-1).pow(at::arange(order + 1, v.options()));
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
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &target = saved[1], &coef = saved[2], &stats = saved[3];
    const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt();
    check_first_order(grads[0], logits);
    const at::Tensor grad_loss = grads[0].to(stats.scalar_type()).contiguous();
    at::Tensor grad_logits, grad_coef;
    if (ctx->needs_input_grad(0))
      grad_logits = call_hard_backward(grad_loss, logits, target, coef, stats, ignore_index);
    if (ctx->needs_input_grad(2)) {
      // d loss / d A_m = -sum_{c != t} p_c^m,  d loss / d B_m = -p_t^m  (ignored rows: 0).
      const int64_t order = coef.size(1) - 1;
      const at::Tensor pw = powers(probabilities(logits, stats), order);  // (rows, C, K+1)
      const at::Tensor t = target.reshape({-1});
      const at::Tensor valid = t.ne(ignore_index);
      const at::Tensor tc = at::where(valid, t, at::zeros_like(t)).view({-1, 1, 1}).expand({-1, 1, order + 1});
      const at::Tensor pt_pw = pw.gather(1, tc).squeeze(1);
      const at::Tensor basis = at::stack({pw.sum(1) - pt_pw, pt_pw}, 1) * valid.view({-1, 1, 1});
      grad_coef = -at::einsum("r,rab->ab", {grad_loss.reshape({-1}), basis});
    }
    return {grad_logits, at::Tensor(), grad_coef, at::Tensor()};
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
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &target = saved[1], &coef = saved[2], &stats = saved[3];
    check_first_order(grads[0], logits);
    const at::Tensor grad_loss = grads[0].to(stats.scalar_type()).contiguous();
    at::Tensor grad_logits, grad_coef;
    if (ctx->needs_input_grad(0)) grad_logits = call_soft_backward(grad_loss, logits, target, coef, stats);
    if (ctx->needs_input_grad(2)) {
      // d loss / d coef[i][m] = -sum_c x_c^i p_c^m.
      const int64_t order = coef.size(1) - 1;
      const at::Tensor p = probabilities(logits, stats);
      const at::Tensor x = target.to(stats.scalar_type()).movedim(1, -1).reshape(p.sizes());
      grad_coef = -at::einsum("r,rci,rcm->im", {grad_loss.reshape({-1}), powers(x, order), powers(p, order)});
    }
    return {grad_logits, at::Tensor(), grad_coef};
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

}  // namespace

TORCH_LIBRARY_IMPL(taylorglo, Autograd, m) {
  m.impl("hard_forward", &hard_forward_autograd);
  m.impl("soft_forward", &soft_forward_autograd);
}

}  // namespace taylorglo
