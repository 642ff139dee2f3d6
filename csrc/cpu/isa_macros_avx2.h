// The ISA macros of AVX2 (with FMA and F16C) that sleef.h and ATen test for, which GCC's target
// pragma does not define: included right after the target pragma by capability_avx2.h and
// capability_avx512.h (AVX-512 builds on the AVX2 set). Not guarded by #pragma once on purpose:
// each capability header includes it once, in its own translation units.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
