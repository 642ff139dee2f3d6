// What the capability builds (kernel_avx2.cpp, kernel_avx512.cpp) include BEFORE their target pragma:
// everything that is not at::vec, so that only the kernels and the Vectorized types of the build's own
// at::vec namespace are compiled for the wider instruction set.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>
