// The AVX512 build of the CPU kernels, included by kernel_avx512_hard.cpp and kernel_avx512_soft.cpp and
// chosen at run time by taylor_loss_cpu.cpp when the CPU has AVX512. Everything that is not at::vec is
// included before the target pragma, so only these kernels and the Vectorized types of namespace
// at::vec::AVX512 are compiled for AVX512.
#pragma once
#if defined(__x86_64__) && defined(__GNUC__)
#include "capability_prelude.h"

// GCC 12 flags the self-initialized `__Y = __Y` of its own intrinsics (_mm512_undefined_*) as
// uninitialized wherever they are inlined under a target pragma: thousands of false positives (the
// default build, kernel_default_*.cpp, still checks the kernels' own code).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#include "isa_macros_avx2.h"  // GCC's target pragma does not define the ISA macros
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#undef CPU_CAPABILITY
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define TAYLORGLO_CPU_NS cpu_avx512
#include "taylor_loss_kernel.h"
#pragma GCC pop_options
#endif
