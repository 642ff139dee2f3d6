// AVX-512 build of the hard-label (class-index target) CPU kernels (its target pragma: capability_avx512.h).
#define TAYLORGLO_KERNELS_HARD
#include "capability_avx512.h"
