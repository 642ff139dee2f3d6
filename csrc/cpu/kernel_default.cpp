// Portable build of the CPU kernels (any x86-64 or other CPU).
#define TAYLORGLO_CPU_NS cpu_default
#include "taylor_loss_kernel.h"
