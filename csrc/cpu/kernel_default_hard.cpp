// Portable build of the hard-label (class-index target) CPU kernels (any x86-64 or other CPU).
#define TAYLORGLO_KERNELS_HARD
#define TAYLORGLO_CPU_NS cpu_default
#include "taylor_loss_kernel.h"
