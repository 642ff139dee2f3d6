// Operator schemas of the taylorglo extension (namespace `taylorglo`).
//
// The Taylor loss of one position (row) with C classes is  -sum_c f(x_c, p_c),  p = softmax(z),
// where f is a polynomial that the Python side has already expanded into a power basis:
//
//   hard labels: coef is (2, K+1): coef[0][m] = A_m, coef[1][m] = B_m with
//                f(x_off, p) = A(p) = sum_m A_m p^m for non-target classes and
//                f(x_on,  p) = B(p) = sum_m B_m p^m for the target class
//                (label smoothing is folded into x_off and x_on);
//   soft labels: coef is (K+1, K+1): f(x, p) = sum_{i,m} coef[i][m] x^i p^m; f has total degree K, so
//                the kernels read only the entries with i + m <= K (the others must be zero).
//
// With g = df/dp the gradient is  dL/dz_j = -p_j (g_j - D),  D = sum_k g_k p_k  (Gonzalez & Miikkulainen 2021).
// Forward ops return the per-position loss and per-row statistics that make the backward one pass.
// The backward recomputes p_j = exp(z_j - M) * (1/S) exactly as the forward did, from the row max M
// and the inverse sum 1/S, S = sum_k exp(z_k - M). (A saved float32 lse = M + log S would be rounded
// to the spacing of M: up to 1e-3 relative error in p for logits near 3e4.) The statistics are a
// (width, rows) tensor, one statistic per row of it, so that neighbouring positions (a CPU lane
// tile, neighbouring CUDA threads) read and write each statistic together:
//   hard: stats (5, rows) = (M, 1/S, D, Q, 1 - p_t) with Q = sum_{k != t} A'(p_k) p_k, so the target
//         gradient  -p_t (B'(p_t)(1 - p_t) - Q)  never forms 1 - p_t by cancellation;
//   soft: stats (3, rows) = (M, 1/S, D).
//   A row with a NaN or infinite logit has NaN statistics (M is NaN), an ignored row zeros.
// Logits are (N, C, d1, ..., dk), contiguous; a "row" is one (n, d1..dk) position. Loss and stats are
// in the logits' accumulation type (float32 for 16-bit inputs), gradients in the logits' dtype.

#include <Python.h>
#include <torch/library.h>

extern "C" {
// An importable (empty) Python module: importing taylorglo._C runs the static registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(taylorglo, m) {
  m.def("hard_forward(Tensor logits, Tensor target, Tensor coef, int ignore_index) -> (Tensor, Tensor)");
  m.def(
      "hard_backward(Tensor grad_loss, Tensor logits, Tensor target, Tensor coef, Tensor stats, "
      "int ignore_index) -> Tensor");
  m.def("soft_forward(Tensor logits, Tensor target, Tensor coef) -> (Tensor, Tensor)");
  m.def(
      "soft_backward(Tensor grad_loss, Tensor logits, Tensor target, Tensor coef, Tensor stats) -> Tensor");
  // The forward op and its reduction (0 none, 1 mean, 2 sum, as at::Reduction) as one op with one
  // autograd node, returning the logits' dtype: what taylorglo.taylor_loss calls. Implemented in
  // autograd.cpp for every backend.
  m.def("hard_loss(Tensor logits, Tensor target, Tensor coef, int ignore_index, int reduction) -> Tensor");
  m.def("soft_loss(Tensor logits, Tensor target, Tensor coef, int reduction) -> Tensor");
}
