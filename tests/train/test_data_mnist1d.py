"""MNIST-1D (generated offline by the mnist1d package) and the 1-D CNN taylorglo_cnn1d."""

import os
import random
import socket

import numpy as np
import pytest
import timm
import torch

from taylorglo.train import TrainConfig, list_datasets, list_registered_models, load_dataset, train
from taylorglo.train import data as data_module
from taylorglo.train.data import dataset_info, make_splits


def _no_network(*args, **kwargs):
    raise AssertionError("MNIST-1D must be generated offline, not downloaded")


@pytest.fixture(scope="module")
def mnist1d_root(tmp_path_factory):
    """A data root in which MNIST-1D was generated once, with every way to the network closed."""
    import mnist1d.data
    import requests

    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mnist1d.data, "get_dataset", _no_network)
        mp.setattr(requests, "get", _no_network)
        mp.setattr(socket.socket, "connect", _no_network)
        load_dataset("mnist1d", data_root=str(root))
    return str(root)


def test_mnist1d_loads_as_float_sequences_of_length_40(mnist1d_root):
    data = load_dataset("mnist1d", data_root=mnist1d_root)
    assert data.train_images.shape == (4000, 1, 1, 40) and data.test_images.shape == (1000, 1, 1, 40)
    assert data.train_images.dtype == torch.float32 and data.test_images.dtype == torch.float32
    assert data.train_labels.dtype == torch.int64 and data.test_labels.dtype == torch.int64
    assert set(data.train_labels.tolist()) == set(range(10)) == set(data.test_labels.tolist())
    assert abs(float(data.train_images.mean())) < 0.05 and abs(float(data.train_images.std()) - 1) < 0.05
    info = data.info
    assert (info.num_classes, info.in_chans, info.spatial_dims, info.image_size) == (10, 1, 1, (1, 40))
    assert not info.augments and info.test_size is None
    assert "mnist1d" in list_datasets() and dataset_info("MNIST-1D") is info


def test_mnist1d_is_the_packages_own_generator_output_with_default_arguments(mnist1d_root):
    from mnist1d.data import get_dataset_args, make_dataset

    ref = make_dataset(get_dataset_args())
    data = load_dataset("mnist1d", data_root=mnist1d_root)
    assert np.array_equal(data.train_images[:, 0, 0].numpy(), ref["x"].astype(np.float32))
    assert np.array_equal(data.train_labels.numpy(), ref["y"])
    assert np.array_equal(data.test_images[:, 0, 0].numpy(), ref["x_test"].astype(np.float32))
    assert np.array_equal(data.test_labels.numpy(), ref["y_test"])


def test_mnist1d_disk_cache_gives_identical_arrays_without_generating(mnist1d_root, monkeypatch):
    first = load_dataset("mnist1d", data_root=mnist1d_root)
    monkeypatch.setattr(data_module, "_CACHE", type(data_module._CACHE)())  # a new process, as it were
    monkeypatch.setattr(data_module, "_generate_mnist1d", _no_network)
    again = load_dataset("mnist1d", data_root=mnist1d_root)
    assert again is not first
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(again, name), getattr(first, name)), name


def test_generation_is_deterministic_restores_global_rngs_and_leaves_one_file(mnist1d_root, tmp_path):
    random.seed(5)
    np.random.seed(5)
    py_state, np_state = random.getstate(), np.random.get_state()
    fresh = load_dataset("mnist1d", data_root=str(tmp_path))  # generated again, in another root
    assert random.getstate() == py_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    first = load_dataset("mnist1d", data_root=mnist1d_root)
    assert torch.equal(fresh.train_images, first.train_images)
    assert torch.equal(fresh.test_labels, first.test_labels)
    files = os.listdir(tmp_path / "mnist1d")
    assert len(files) == 1 and files[0].startswith("mnist1d-") and files[0].endswith(".npz")


def test_unreadable_cache_file_is_generated_again(tmp_path):
    from importlib.metadata import version

    path = tmp_path / "mnist1d" / f"mnist1d-{version('mnist1d')}.npz"
    path.parent.mkdir()
    path.write_bytes(b"not a zip file")  # e.g. written by hand, or by another tool
    data = load_dataset("mnist1d", data_root=str(tmp_path))
    assert data.train_images.shape == (4000, 1, 1, 40)
    assert data_module._read_mnist1d(str(path)) is not None  # replaced by the generated arrays


def test_mnist1d_validation_carve_is_fixed_by_split_seed_and_disjoint(mnist1d_root):
    data = load_dataset("mnist1d", data_root=mnist1d_root)
    n, default = len(data.train_labels), data.info.validation_size
    a = make_splits(n, None, 42, default_validation_size=default)
    b = make_splits(n, None, 42, default_validation_size=default)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert (len(a.train), len(a.val)) == (3000, 1000)
    assert set(a.train.tolist()).isdisjoint(a.val.tolist())
    assert set(a.train.tolist()) | set(a.val.tolist()) == set(range(4000))
    assert set(data.train_labels[a.val].tolist()) == set(range(10))
    assert not torch.equal(make_splits(n, None, 7, default_validation_size=default).val, a.val)


def test_cnn1d_maps_sequences_to_logits_in_both_layouts():
    assert "taylorglo_cnn1d" in list_registered_models()
    torch.manual_seed(0)
    model = timm.create_model("taylorglo_cnn1d", pretrained=False, num_classes=10, in_chans=1)
    x = torch.randn(6, 1, 40)
    out = model(x)
    assert out.shape == (6, 10)
    assert torch.equal(model(x[:, :, None, :]), out)  # the trainer's (N, C, 1, L) layout
    assert [m.kernel_size[0] for m in (model.conv1, model.conv2, model.conv3)] == [5, 3, 3]
    assert {m.stride[0] for m in (model.conv1, model.conv2, model.conv3)} == {2}
    assert model.conv3.out_channels == 25 and model.head.in_features == 125
    assert sum(p.numel() for p in model.parameters()) == 5210
    wide = timm.create_model("taylorglo_cnn1d", num_classes=3, in_chans=2, seq_len=50)
    assert wide(torch.randn(4, 2, 50)).shape == (4, 3)


def test_cnn1d_errors_name_the_wrong_input():
    model = timm.create_model("taylorglo_cnn1d", num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match=r"1-D sequences .*\(2, 1, 28, 28\).*2-D model"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"length 40, got length 50; build it with seq_len=50"):
        model(torch.zeros(2, 1, 50))


@pytest.mark.parametrize(
    "dataset, model, match",
    [
        (
            "mnist1d",
            "taylorglo_smallcnn",
            r"'taylorglo_smallcnn' takes images but dataset 'mnist1d' holds 1-D",
        ),
        (
            "mnist-1d",
            "resnet18",
            r"'resnet18' takes images .* \(N, 1, 40\); use a 1-D model \(taylorglo_cnn1d",
        ),
        (
            "digits",
            "taylorglo_cnn1d",
            r"'taylorglo_cnn1d' takes 1-D sequences but dataset 'digits' holds images",
        ),
    ],
)
def test_config_rejects_a_model_of_the_wrong_dimension(dataset, model, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(dataset=dataset, model=model)


def test_tiny_training_on_mnist1d_completes(mnist1d_root):
    cfg = TrainConfig(
        dataset="mnist1d",
        model="taylorglo_cnn1d",
        epochs=1,
        train_size=200,
        batch_size=50,
        data_root=mnist1d_root,
        device="cpu",
        min_accuracy=None,  # 4 steps can end at chance, which is a collapse status otherwise
    )
    result = train(cfg, "cross-entropy", evaluate_test=True)
    assert result.status == "ok", result.error
    assert result.steps == 4 and result.val_accuracy is not None and result.test_accuracy is not None


def test_cnn1d_learns_mnist1d(mnist1d_root):
    cfg = TrainConfig(
        dataset="mnist1d", model="taylorglo_cnn1d", epochs=30, train_size=1000, data_root=mnist1d_root
    )
    result = train(cfg, "cross-entropy")
    assert result.status == "ok" and result.val_accuracy > 0.4  # chance: 0.1
