// AVX-512 build of the soft-label (probability target) CPU kernels (its target pragma: capability_avx512.h).
#define TAYLORGLO_KERNELS_SOFT
#include "capability_avx512.h"
