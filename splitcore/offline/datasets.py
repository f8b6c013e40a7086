"""CIFAR-10 loading from the forms users actually have it in.

Training, evaluation, the tests and the benchmarks all read images through this module so
that "the test set" means the same pixels everywhere. It needs only NumPy and OpenCV: the
runtime never imports PyTorch.

Accepted forms of ``path``:
- the project's ``cifar10-jpeg.tar.xz`` (or any tar with ``*/{train,test}/<class>/*.jpg``),
  decoded straight from memory without unpacking;
- the "python version" folder ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``);
- an image folder ``<root>/{train,test}/<class>/*.{jpg,png}`` (or ``<root>/cifar10/...``).
"""
from __future__ import annotations

import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class DatasetError(RuntimeError):
    """The data set path is missing or not in a form this module understands."""


@dataclass(frozen=True)
class Split:
    """One split of the data set: ``images`` is uint8 RGB, shape ``[N, 32, 32, 3]``."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def default_data_path() -> Path:
    """``$SPLITRTC_DATA`` if set (the Makefile sets it to ``../shared/data/cifar10-jpeg.tar.xz``),
    else ``cifar10-jpeg.tar.xz`` in the working directory: no code here reaches outside the
    repository on its own."""
    return Path(os.environ.get("SPLITRTC_DATA") or "cifar10-jpeg.tar.xz")


def load_cifar10(path: str | os.PathLike | None = None, split: str = "test",
                 limit: int | None = None) -> Split:
    """Load ``split`` ("train" or "test"); ``limit`` keeps the first N per class order."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    p = Path(path) if path is not None else default_data_path()
    if not p.exists():
        raise DatasetError(
            f"CIFAR-10 not found at {p}. Pass --data PATH (the .tar.xz, a cifar-10-batches-py/ "
            "folder or an image folder) or set SPLITRTC_DATA.")
    if p.is_file():
        out = _from_tar(p, split)
    elif (p / "data_batch_1").exists() or (p / "test_batch").exists():
        out = _from_python_batches(p, split)
    else:
        out = _from_image_folder(p, split)
    if limit is not None:
        out = Split(out.images[:limit], out.labels[:limit], out.classes)
    return out


def _class_order(names: set[str]) -> tuple[str, ...]:
    """CIFAR-10's conventional index order when the names match, sorted otherwise."""
    return CIFAR10_CLASSES if names == set(CIFAR10_CLASSES) else tuple(sorted(names))


def _decode(data: bytes | np.ndarray, where: str) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot decode image {where}")
    if img.shape[:2] != (32, 32):
        img = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _stack(items: list[tuple[str, str, np.ndarray]], where: Path) -> Split:
    """Sort by (class, file name) so every loader returns a stable order."""
    if not items:
        raise DatasetError(f"no images found under {where}")
    classes = _class_order({c for c, _, _ in items})
    index = {c: i for i, c in enumerate(classes)}
    items.sort(key=lambda t: (index[t[0]], t[1]))
    images = np.stack([img for _, _, img in items])
    labels = np.array([index[c] for c, _, _ in items], dtype=np.int64)
    return Split(images, labels, classes)


def _from_tar(path: Path, split: str) -> Split:
    items: list[tuple[str, str, np.ndarray]] = []
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                parts = member.name.split("/")
                if (not member.isfile() or len(parts) < 3 or parts[-3] != split
                        or not parts[-1].lower().endswith(_IMAGE_EXTS)):
                    continue
                fileobj = tar.extractfile(member)
                if fileobj is None:  # isfile() said it is a regular file; never None then
                    continue
                data = fileobj.read()
                items.append((parts[-2], parts[-1], _decode(data, f"{path}:{member.name}")))
    except tarfile.TarError as exc:
        raise DatasetError(f"{path} is not a readable tar archive: {exc}") from exc
    return _stack(items, path)


def _from_image_folder(root: Path, split: str) -> Split:
    base = root / split if (root / split).is_dir() else root / "cifar10" / split
    if not base.is_dir():
        raise DatasetError(f"{root} has neither {split}/<class>/ images nor cifar10/{split}/")
    items = []
    for cls_dir in sorted(d for d in base.iterdir() if d.is_dir()):
        for f in sorted(cls_dir.iterdir()):
            if f.suffix.lower() in _IMAGE_EXTS:
                items.append((cls_dir.name, f.name, _decode(np.fromfile(f, np.uint8), str(f))))
    return _stack(items, base)


def _from_python_batches(root: Path, split: str) -> Split:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        with open(root / name, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], np.int64))
    classes = CIFAR10_CLASSES
    meta = root / "batches.meta"
    if meta.exists():
        with open(meta, "rb") as fh:
            classes = tuple(n.decode() for n in pickle.load(fh, encoding="bytes")[b"label_names"])
    imgs = np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1))
    return Split(imgs, np.concatenate(labels), classes)
