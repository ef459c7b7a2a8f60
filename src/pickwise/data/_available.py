"""Pick the first dataset whose files are present (jobs that prefer Fashion-MNIST but must run anywhere)."""

from __future__ import annotations

import sys

from ..exceptions import DataNotFoundError
from ._factory import check_dataset_available

__all__ = ["first_available_dataset"]


def first_available_dataset(*names: str, announce: bool = True) -> str:
    """Return the first of ``names`` whose data can be found; say on stderr why earlier ones were skipped.

    "Found" is :func:`~pickwise.data.check_dataset_available` (files present, packages importable), not
    :func:`~pickwise.data.get_dataset_info`, which reports ``fashion-mnist``'s static metadata even without its files.

    Raises:
        DataNotFoundError: If none is available (the message of the last one).
    """
    last: DataNotFoundError | None = None
    for name in names:
        try:
            check_dataset_available(name)
            return name
        except DataNotFoundError as err:
            last = err
            if announce:
                print(f"note: {err}", file=sys.stderr)
    assert last is not None, "first_available_dataset needs at least one name"
    raise last
