// AVX2 build of the hard-label (class-index target) CPU kernels (its target pragma: capability_avx2.h).
#define TAYLORGLO_KERNELS_HARD
#include "capability_avx2.h"
