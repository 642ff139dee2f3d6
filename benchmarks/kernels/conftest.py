"""pytest options for the loss benchmarks (``pytest benchmarks/``; not collected by the test suite).

--bench-threads N   torch.set_num_threads for CPU cases (default 2, as in issue 3's targets)
--bench-large       also run the shapes of more than 16M elements on CPU (minutes per case)
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

LARGE_NUMEL = 1 << 24


def pytest_addoption(parser):
    group = parser.getgroup("taylorglo benchmarks")
    group.addoption("--bench-threads", type=int, default=2, help="torch.set_num_threads for CPU cases")
    group.addoption("--bench-large", action="store_true", help="run CPU cases of more than 16M elements too")


@pytest.fixture(scope="session", autouse=True)
def _bench_settings(request):
    common.set_threads(request.config.getoption("--bench-threads"))
    common.quiet_compile(in_process=not torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    if config.getoption("--bench-large"):
        return
    skip = pytest.mark.skip(reason="CPU case of more than 16M elements: pass --bench-large")
    for item in items:
        params = getattr(item, "callspec", None)
        if params is None:
            continue
        shape, device = params.params.get("shape"), params.params.get("device")
        if (
            shape is not None
            and device == "cpu"
            and common.Case(shape, "float32", "hard").numel > LARGE_NUMEL
        ):
            item.add_marker(skip)


def cuda_available() -> bool:
    return torch.cuda.is_available()
