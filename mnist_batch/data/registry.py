"""Data set specs, resolved through one registry: ``kind`` or ``kind:ARG`` -> a loader.

As in big_vision's ``pp/registry.py``: one table from a name to what builds it, used by the
CLI's help, ``load_dataset`` and ``evaluate`` alike, and an error that lists the valid specs.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

from mnist_batch.data.base import Dataset
from mnist_batch.errors import DataError


@dataclasses.dataclass(frozen=True)
class DataSource:
    """One kind of data set spec.

    Attributes:
      kind: the spec's name (``sample``, ``npz``, ...).
      argument: what follows ``kind:`` -- ``""`` none, ``"PATH"`` / ``"DIR"`` required,
        ``"[DIR]"`` optional.
      load: ``(argument or None, spec) -> Dataset``.
      files: the data set is image files on disk (``evaluate`` scores them with the scoring
        pipeline instead of loading arrays).
    """

    kind: str
    argument: str
    load: Callable[[str | None, str], Dataset]
    files: bool = False

    @property
    def usage(self) -> str:
        if not self.argument:
            return self.kind
        if self.argument.startswith("["):
            return f"{self.kind}[:{self.argument[1:-1]}]"
        return f"{self.kind}:{self.argument}"


def _sources() -> dict[str, DataSource]:
    from mnist_batch.data.fashion import load_fashion_mnist
    from mnist_batch.data.folder import load_folder
    from mnist_batch.data.idx import load_idx
    from mnist_batch.data.keras_mnist import load_keras_mnist
    from mnist_batch.data.npz import load_npz
    from mnist_batch.data.sample import load_sample

    sources = (
        DataSource("sample", "", lambda arg, spec: load_sample()),
        DataSource("npz", "PATH", lambda arg, spec: load_npz(arg, name=spec)),
        DataSource("idx", "DIR", lambda arg, spec: load_idx(arg, name=spec)),
        DataSource("folder", "DIR", lambda arg, spec: load_folder(arg, name=spec), files=True),
        DataSource("mnist", "", lambda arg, spec: load_keras_mnist()),
        DataSource("fashion-mnist", "[DIR]", lambda arg, spec: load_fashion_mnist(arg, name=spec)),
    )
    return {s.kind: s for s in sources}


SOURCES = _sources()
DATASET_SPECS = tuple(s.usage for s in SOURCES.values())
"""Every spec form, for help texts: ``sample``, ``npz:PATH``, ..."""


def parse_spec(spec: str) -> tuple[DataSource, str | None]:
    """``"idx:/data"`` -> (the ``idx`` source, ``"/data"``).

    Raises:
      DataError: unknown kind, a missing required argument, or an argument where none is taken.
    """
    kind, sep, arg = spec.partition(":")
    source = SOURCES.get(kind)
    valid = False
    if source is not None:
        optional = source.argument.startswith("[")
        valid = bool(arg) and bool(source.argument) if sep else (optional or not source.argument)
    if not valid:
        raise DataError(f"unknown data set {spec!r}; expected one of: {', '.join(DATASET_SPECS)}")
    return source, (arg if sep else None)


def load_dataset(spec: str) -> Dataset:
    """Loads the data set named by ``spec``.

    Raises:
      DataError: unknown spec, or any problem the loader finds, naming the file.
    """
    source, arg = parse_spec(spec)
    return source.load(arg, spec)


def image_folder(spec: str) -> str | None:
    """The folder of image files a spec names (``folder:DIR``, or a plain existing directory), else None."""
    try:
        source, arg = parse_spec(spec)
    except DataError:
        return spec if pathlib.Path(spec).is_dir() else None
    return arg if source.files else None
