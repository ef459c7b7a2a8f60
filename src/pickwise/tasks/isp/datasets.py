"""Named ISP datasets: the real Zurich RAW-to-RGB (``"zrr"``) and the offline benchmark (``"isp-synth"``).

Both are read by the same :class:`~pickwise.tasks.isp.raw.ZRRDataset`, so a model, a loss or an evaluation never
knows which one it sees:

- ``"zrr"``: ``root`` or ``$PICKWISE_ZRR_DIR``; ZRR cannot be redistributed, get it from the PyNET project page
  (https://people.ee.ethz.ch/~ihnatova/pynet.html) under its licence. 46,839 train / 1,204 test pairs.
- ``"isp-synth"``: ``root`` or :func:`~pickwise.tasks.isp.synth.default_isp_synth_root` (one folder per seed:
  ``seed`` > 0 uses ``<root>-seed<k>``), generated on first use (about a minute on a 2-core CPU).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ...exceptions import DataNotFoundError, UnknownNameError
from .raw import RawLevels, ZRRDataset

__all__ = ["ISP_DATASETS", "find_zrr_root", "isp_synth_root_for_seed", "load_isp_dataset", "split_checksum"]

ISP_DATASETS = ("zrr", "isp-synth")


def find_zrr_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` or ``$PICKWISE_ZRR_DIR``; raises :class:`DataNotFoundError` with how to get ZRR when neither exists."""
    candidate = root if root is not None else os.environ.get("PICKWISE_ZRR_DIR", "").strip() or None
    if candidate is None or not (Path(candidate).expanduser() / "test" / "huawei_raw").is_dir():
        where = f" at {Path(candidate).expanduser()}" if candidate is not None else ""
        raise DataNotFoundError(
            f"zrr: the Zurich RAW-to-RGB dataset was not found{where}; download it from "
            "https://people.ee.ethz.ch/~ihnatova/pynet.html and pass its folder (holding train/ and test/) as root "
            "or set PICKWISE_ZRR_DIR; offline, use the 'isp-synth' benchmark instead"
        )
    return Path(candidate).expanduser()


def isp_synth_root_for_seed(seed: int = 0, base: str | os.PathLike[str] | None = None) -> Path:
    """The default folder of the ``isp-synth`` benchmark drawn with ``seed`` (``<base>`` for 0, else ``-seed<k>``)."""
    from .synth import default_isp_synth_root

    base = default_isp_synth_root() if base is None else Path(base).expanduser()
    return base if seed == 0 else base.with_name(f"{base.name}-seed{seed}")


def load_isp_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    crop: int | tuple[int, int] | None = None,
    convention: str | RawLevels = "pynet",
    seed: int = 0,
    progress: bool = True,
    synth_params: dict[str, Any] | None = None,
    **options: Any,
) -> ZRRDataset:
    """A :class:`ZRRDataset` for ``"zrr"`` or ``"isp-synth"`` (generated on first use).

    Args:
        name: ``"zrr"`` or ``"isp-synth"``.
        root: dataset folder (default: ``$PICKWISE_ZRR_DIR`` / the isp-synth cache folder for ``seed``).
        split: ``"train"``, ``"test"`` or ``"full"``.
        crop: RGB crop size (see :class:`ZRRDataset`).
        convention: RAW normalisation (``"pynet"``, ``"skyb"``, ``"mwisp"`` or :class:`RawLevels`).
        seed: isp-synth drawing seed.
        progress: show generation progress.
        synth_params: overrides of :data:`pickwise.tasks.isp.synth.DEFAULT_PARAMS`.
        **options: passed to :class:`ZRRDataset` (``random_crop``, ``exclude``, ``pattern``, ``bit_depth``).
    """
    if name == "zrr":
        return ZRRDataset(find_zrr_root(root), split, crop=crop, convention=convention, **options)
    if name == "isp-synth":
        from .synth import make_isp_synth

        folder = isp_synth_root_for_seed(seed) if root is None else Path(root).expanduser()
        make_isp_synth(folder, seed=seed, progress=progress, **(synth_params or {}))
        return ZRRDataset(folder, split, crop=crop, convention=convention, **options)
    raise UnknownNameError(f"unknown ISP dataset {name!r}; use one of {', '.join(ISP_DATASETS)}")


def split_checksum(root: str | os.PathLike[str], split: str = "test") -> str:
    """sha256 over a split's pairs in :class:`ZRRDataset` order (names and file bytes of RAW and target).

    Two copies of ZRR (or two generated benchmarks) hold the same pairs exactly when their checksums agree, so a
    reported number can name the data it was measured on.
    """
    ds = ZRRDataset(root, split)
    digest = hashlib.sha256()
    for name, raw, rgb in zip(ds.names, ds.raw_paths, ds.rgb_paths):
        digest.update(name.encode() + b"\0")
        for path in (raw, rgb):
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
