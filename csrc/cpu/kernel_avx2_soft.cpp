// AVX2 build of the soft-label (probability target) CPU kernels (its target pragma: capability_avx2.h).
#define TAYLORGLO_KERNELS_SOFT
#include "capability_avx2.h"
