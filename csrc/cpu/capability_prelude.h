// What the capability builds (capability_avx2.h, capability_avx512.h) include BEFORE their target
// pragma: everything that is not at::vec, so that only the kernels and the Vectorized types of the
// build's own at::vec namespace are compiled for the wider instruction set.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../checks.h"
