// The AVX2 build of the CPU kernels, included by kernel_avx2_hard.cpp and kernel_avx2_soft.cpp and
// chosen at run time by taylor_loss_cpu.cpp when the CPU has AVX2. Everything that is not at::vec is
// included before the target pragma, so only these kernels and the Vectorized types of namespace
// at::vec::AVX2 are compiled for AVX2.
#pragma once
#if defined(__x86_64__) && defined(__GNUC__)
#include "capability_prelude.h"

// GCC 12 flags the self-initialized `__Y = __Y` of its own intrinsics (_mm512_undefined_*) as
// uninitialized wherever they are inlined under a target pragma: thousands of false positives (the
// default build, kernel_default_*.cpp, still checks the kernels' own code).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include "isa_macros_avx2.h"  // GCC's target pragma does not define the ISA macros
#undef CPU_CAPABILITY
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define TAYLORGLO_CPU_NS cpu_avx2
#include "taylor_loss_kernel.h"
#pragma GCC pop_options
#endif
