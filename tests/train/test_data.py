import os

import pytest
import torch

from taylorglo.train import DatasetUnavailableError, list_datasets, load_dataset
from taylorglo.train.data import _carve, dataset_info, make_splits


@pytest.mark.parametrize(
    "name, n_train, n_test, shape",
    [("digits", 1397, 400, (1, 8, 8)), ("mnist-5k", 4000, 1000, (1, 28, 28))],
)
def test_offline_datasets_load_as_uint8_tensors(name, n_train, n_test, shape):
    data = load_dataset(name)
    assert data.train_images.shape == (n_train, *shape) and data.test_images.shape == (n_test, *shape)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert set(data.train_labels.tolist()) == set(range(10)) == set(data.test_labels.tolist())
    assert data.train_images.float().max() <= data.info.scale


def test_loading_is_cached_per_process():
    assert load_dataset("digits") is load_dataset("digits")
    assert load_dataset("mnist-5k") is load_dataset("MNIST_5K", data_root="/elsewhere")  # offline: no root


def test_mnist_5k_is_shuffled_so_every_split_holds_every_class():
    data = load_dataset("mnist-5k")
    splits = make_splits(len(data.train_labels), None, 42, default_validation_size=1000, train_fraction=0.1)
    assert set(data.train_labels[splits.train].tolist()) == set(range(10))
    assert set(data.train_labels[splits.val].tolist()) == set(range(10))


def test_fixed_test_carve_partitions_the_source():
    test, pool = _carve(1797, 400, 123)
    assert len(test) == 400 and len(pool) == 1397
    assert set(test.tolist()).isdisjoint(pool.tolist())
    assert set(test.tolist()) | set(pool.tolist()) == set(range(1797))


def test_offline_test_split_is_disjoint_from_training_pool():
    from sklearn.datasets import load_digits

    full = torch.from_numpy(load_digits().images).to(torch.uint8).reshape(1797, -1)
    data = load_dataset("digits")
    rows = {tuple(r) for r in full.tolist()}
    pool = data.train_images.reshape(len(data.train_images), -1)
    test = data.test_images.reshape(len(data.test_images), -1)
    # together they are exactly the source (as multisets of (image, label) rows)
    combined = sorted(
        map(
            tuple,
            torch.cat(
                [
                    torch.cat([pool, data.train_labels[:, None]], 1),
                    torch.cat([test, data.test_labels[:, None]], 1),
                ]
            ).tolist(),
        )
    )
    source = sorted(
        map(tuple, torch.cat([full, torch.from_numpy(load_digits().target)[:, None]], 1).tolist())
    )
    assert combined == source and len(rows) > 1700


def test_validation_split_is_disjoint_from_training_and_fixed_by_split_seed():
    a = make_splits(1000, 100, 42)
    b = make_splits(1000, 100, 42)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert len(a.val) == 100 and len(a.train) == 900
    assert set(a.train.tolist()).isdisjoint(a.val.tolist())
    c = make_splits(1000, 100, 7)
    assert not torch.equal(a.val, c.val)


def test_validation_split_is_the_tail_of_one_seeded_shuffle():
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(42))
    splits = make_splits(1000, 100, 42)
    assert splits.val.tolist() == sorted(perm[900:].tolist())


def test_train_fraction_keeps_a_subset_independent_of_the_run():
    full = make_splits(1000, 0.1, 42)
    part = make_splits(1000, 0.1, 42, train_fraction=0.25)
    sized = make_splits(1000, 0.1, 42, train_size=225)
    assert len(full.val) == 100 and len(part.train) == 225
    assert set(part.train.tolist()) <= set(full.train.tolist())
    assert torch.equal(part.train, sized.train) and torch.equal(part.val, full.val)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation_size": 1000}, "validation_size"),
        ({"validation_size": 10, "train_size": 995}, "train_size"),
    ],
)
def test_impossible_splits_raise(kwargs, match):
    vs = kwargs.pop("validation_size")
    with pytest.raises(ValueError, match=match):
        make_splits(1000, vs, 42, **kwargs)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'.*digits.*cifar10"):
        load_dataset("imagenet")
    assert {"digits", "mnist-5k", "mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn"} <= set(
        list_datasets()
    )
    assert dataset_info("CIFAR-100").num_classes == 100


def _fake_failed_download(self):
    """What torchvision does offline: create the raw folder (and maybe a partial file), then fail."""
    os.makedirs(self.raw_folder, exist_ok=True)
    with open(os.path.join(self.raw_folder, "train-images-idx3-ubyte.gz.partial"), "wb") as f:
        f.write(b"\x1f\x8b")
    raise RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -2] Name or service not known>"
    )


def test_missing_dataset_error_is_one_line_and_leaves_no_folders(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", _fake_failed_download)
    root = tmp_path / "new" / "data"
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", data_root=str(root), download=True)
    message = str(info.value)
    assert "\n" not in message
    assert "'mnist'" in message and str(root) in message and "MNIST/raw" in message and "download" in message
    assert os.listdir(tmp_path) == []  # not even tmp_path/new


def test_missing_dataset_in_existing_root_removes_only_what_it_created(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", _fake_failed_download)
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "MNIST").mkdir()  # pre-existing, empty: must survive
    with pytest.raises(DatasetUnavailableError):
        load_dataset("mnist", data_root=str(tmp_path), download=True)
    assert sorted(os.listdir(tmp_path)) == ["MNIST", "keep.txt"]
    assert os.listdir(tmp_path / "MNIST") == []


def test_missing_dataset_without_download_names_the_data_root(tmp_path):
    root = tmp_path / "nothing-here"
    with pytest.raises(
        DatasetUnavailableError, match=r"'cifar10' is not in data root .*nothing-here.*download=False"
    ):
        load_dataset("cifar10", data_root=str(root), download=False)
    assert os.listdir(tmp_path) == []


def _write_idx(path, array):
    import struct

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    code = 0x0803 if array.ndim == 3 else 0x0801
    with open(path, "wb") as f:
        f.write(
            struct.pack(">I", code) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
        )


@pytest.fixture
def fake_mnist_root(tmp_path):
    """A data root holding MNIST-format files (80 train, 20 test images) where torchvision looks."""
    import numpy as np

    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 80), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        images[np.arange(n), labels, labels] = 255  # a learnable mark
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path


def test_torchvision_dataset_on_disk_loads_without_download(fake_mnist_root):
    data = load_dataset("mnist", data_root=str(fake_mnist_root), download=False)
    assert data.train_images.shape == (80, 1, 28, 28) and data.test_images.shape == (20, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.tolist()[:3] == [0, 1, 2]
    assert data.train_images[3, 0, 3, 3] == 255


def test_cache_is_keyed_by_name_and_root_not_by_download(fake_mnist_root):
    a = load_dataset("mnist", data_root=str(fake_mnist_root), download=False)
    assert load_dataset("mnist", data_root=str(fake_mnist_root) + "/", download=True) is a


def test_training_on_a_torchvision_dataset_from_disk(fake_mnist_root):
    from taylorglo.train import TrainConfig, train

    cfg = TrainConfig(
        dataset="mnist",
        data_root=str(fake_mnist_root),
        download=False,
        validation_size=20,
        epochs=2,
        batch_size=16,
        min_accuracy=None,  # 8 steps on fake images end at chance, which is a collapse status otherwise
    )
    result = train(cfg, evaluate_test=True)
    assert result.status == "ok" and result.steps == 2 * 4 and result.test_accuracy is not None


def test_image_layouts_of_cifar_and_svhn_become_nchw():
    from types import SimpleNamespace

    import numpy as np

    from taylorglo.train.data import _as_tensors

    nhwc = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    nhwc[1, 0, 5, 2] = 7
    x, y = _as_tensors(dataset_info("cifar10"), SimpleNamespace(data=nhwc, targets=[3, 4]))
    assert x.shape == (2, 3, 32, 32) and x[1, 2, 0, 5] == 7 and y.tolist() == [3, 4]
    nchw = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    x, y = _as_tensors(dataset_info("svhn"), SimpleNamespace(data=nchw, labels=np.array([1, 9])))
    assert x.shape == (2, 3, 32, 32) and y.dtype == torch.int64


def test_augmentation_is_a_padded_crop_and_flip_of_each_image():
    from taylorglo.train.loop import _Batcher

    info = dataset_info("cifar10")
    images = torch.randint(1, 255, (16, 3, 32, 32), dtype=torch.uint8)
    batcher = _Batcher(
        info,
        images,
        torch.zeros(16, dtype=torch.int64),
        torch.device("cpu"),
        False,
        True,
        torch.Generator().manual_seed(0),
    )
    out = batcher._augment(images)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for i in range(16):
        windows = [
            (padded[i, :, r : r + 32, c : c + 32], f) for r in range(9) for c in range(9) for f in (0, 1)
        ]
        matches = [f for w, f in windows if torch.equal(out[i], w.flip(-1) if f else w)]
        assert matches, f"image {i} is not a crop of its padded original"
        flips += matches[0]
    assert 0 < flips < 16
    # SVHN digits are cropped but never mirrored
    assert not dataset_info("svhn").flip and dataset_info("svhn").crop_padding == 4
