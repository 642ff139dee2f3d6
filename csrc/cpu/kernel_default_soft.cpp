// Portable build of the soft-label (probability target) CPU kernels (any x86-64 or other CPU).
#define TAYLORGLO_KERNELS_SOFT
#define TAYLORGLO_CPU_NS cpu_default
#include "taylor_loss_kernel.h"
