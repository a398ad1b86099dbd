"""Listing local ``--input`` patterns so that every entry met is accounted for.

Beam's local ``FileSystems.match`` walks folders with ``os.walk`` and drops, without a word,
what it cannot list or stat: broken symlinks, symlink loops, unreadable folders, symlinks to
folders. :func:`list_local` walks the same way (from the pattern's fixed prefix, matching with
Beam's own ``FileSystem.translate_pattern``, symlinked folders not followed) but reports each
of those as a skipped ``(path, reason)``. It also keeps this tool's outputs out of the inputs:
a folder that is the run's own ``--output``, or looks like an output of ``mnist-batch``
(:func:`is_tool_output`), is skipped whole, as one ``(folder/, reason)`` row.

Non-regular files (FIFOs, devices, sockets, symlinks to them) are listed like files: the read
step refuses them with an error row (``stage=read``), without opening them.

Beam-free (the in-process engine lists with it too, :mod:`mnist_batch.inprocess`): a file is a
:class:`ListedFile` (the fields of Beam's ``FileMetadata``), patterns are read with
:func:`translate_pattern` (Beam's ``FileSystem.translate_pattern``, the same regular expressions:
``tests/test_inprocess.py`` compares them). :func:`classify_listing` adds the extension filter, so
the Beam step (:class:`~mnist_batch.scoring.matching.ListLocalFilesFn`) and the in-process job
classify every entry by one function.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import operator
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence

from mnist_batch.files import escape_path
from mnist_batch.tables import LAYOUT_FILE, SUMMARY_FILE

SKIP_DIRECTORY = "directory"
SKIP_BROKEN_LINK = "broken symlink"
SKIP_LINK_LOOP = "symlink loop"
SKIP_FOLDER_LINK = "symlink to a folder (not followed)"
SKIP_TOOL_OUTPUT = "output of mnist-batch"
SKIP_VANISHED = "vanished while listing"
UNREADABLE_FOLDER = "unreadable folder"
UNREADABLE_LINK = "unreadable symlink"

SKIP_EXTENSION = "not an image extension"

GLOB_RE = re.compile(r"^[^[*?]*")


@dataclasses.dataclass(frozen=True, slots=True)
class ListedFile:
    """A listed file: the fields of Beam's ``FileMetadata`` (what the read step and the keys use);
    not a tuple, so that a skipped ``(path, reason)`` is told from it by ``isinstance(item, tuple)``."""

    path: str
    size_in_bytes: int | None
    last_updated_in_seconds: float | None
    """Both None when listed without metadata (``metadata=False``: the in-process job reads neither)."""


Listed = ListedFile | tuple[str, str]
"""What the listing yields: a file's metadata, or a skipped ``(path, reason)``."""


def translate_pattern(pattern: str) -> str:
    """A Beam glob -> a regular expression, as Beam's ``FileSystem.translate_pattern`` makes it
    (``*`` within a folder, ``**`` across folders, ``?``, ``[...]``; fnmatch's rules otherwise)."""
    i, n, res = 0, len(pattern), ""
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                res, i = res + ".*", i + 1
            else:
                res += r"[^/\\]*"
        elif c == "?":
            res += "."
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                res += r"\["
            else:
                stuff = pattern[i:j].replace("\\", "\\\\")
                i = j + 1
                if stuff[0] == "!":
                    stuff = "^" + stuff[1:]
                elif stuff[0] == "^":
                    stuff = "\\" + stuff
                res = f"{res}[{stuff}]"
        else:
            res += re.escape(c)
    return r"(?ms)" + res + r"\Z"


def extension_of(path: str) -> str:
    """The extension of the path's last name, lower case, without the dot ("" when it has none)."""
    name = path.rstrip("/")
    name = name[name.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[dot + 1 :].lower() if dot >= 0 else ""


def skip_reason(path: str, extensions: frozenset[str], output_prefixes: tuple[str, ...] = ()) -> str | None:
    """Why a listed ``path`` is not scored (None: an image file to score): a directory, a file
    under one of ``output_prefixes`` (the run's own remote outputs), or another extension."""
    if path.endswith("/") or path.endswith("\\"):
        return SKIP_DIRECTORY
    if output_prefixes and path.startswith(output_prefixes):
        return SKIP_TOOL_OUTPUT
    if extension_of(path) not in extensions:
        return SKIP_EXTENSION
    return None


def scan_dir(path: str) -> list[os.DirEntry]:
    """The entries of one folder, sorted by name (one place, so tests can refuse folders as root does not)."""
    with os.scandir(path) as entries:
        return sorted(entries, key=BY_NAME)


BY_NAME = operator.attrgetter("name")


def entry_named(entries: Sequence[os.DirEntry], name: str) -> os.DirEntry | None:
    """The entry called ``name`` among ``entries`` sorted by name (a binary search: folders of a
    hundred thousand files are looked into for three names)."""
    i = bisect.bisect_left(entries, name, key=BY_NAME)
    return entries[i] if i < len(entries) and entries[i].name == name else None


def folder_id(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of a folder, None when it does not exist (yet)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def is_tool_output(entries: Sequence[os.DirEntry], identity: tuple[int, int], own: Sequence[tuple[int, int]]) -> bool:
    """True for a folder that holds outputs of this tool.

    Args:
      entries: the folder's entries, sorted by name (:func:`scan_dir`).
      identity: the folder's ``(st_dev, st_ino)``.
      own: identities of this run's own output folders.

    Returns:
      True when the folder is one of ``own``, holds :data:`~mnist_batch.tables.LAYOUT_FILE` (a runs-layout
      root), or holds ``summary.json`` next to a ``predictions/`` folder (a flat output, or one
      run of the runs layout).
    """
    if identity in own:
        return True
    if entry_named(entries, LAYOUT_FILE) is not None:
        return True
    predictions = entry_named(entries, "predictions")
    return (
        entry_named(entries, SUMMARY_FILE) is not None
        and predictions is not None
        and predictions.is_dir(follow_symlinks=False)
    )


def _reason(message: str, exc: OSError) -> str:
    return f"{message}: {exc.strerror or type(exc).__name__}"


def classify_link(path: str) -> os.stat_result | str:
    """The stat of a symlink's target, or the reason it cannot be followed."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return SKIP_BROKEN_LINK
    except OSError as exc:
        return SKIP_LINK_LOOP if exc.errno == errno.ELOOP else _reason(UNREADABLE_LINK, exc)


def classify_entry(path: str, entry: os.DirEntry | None = None) -> os.stat_result | str:
    """A non-folder entry -> the stat of what it names (links followed) or a skip reason."""
    try:
        lst = entry.stat(follow_symlinks=False) if entry is not None else os.lstat(path)
    except FileNotFoundError:
        return SKIP_VANISHED
    except OSError as exc:
        return _reason("cannot stat", exc)
    if not stat.S_ISLNK(lst.st_mode):
        return lst
    target = classify_link(path)
    if isinstance(target, os.stat_result) and stat.S_ISDIR(target.st_mode):
        return SKIP_FOLDER_LINK
    return target


def list_file(path: str) -> Iterator[Listed]:
    """A pattern without glob characters: the file itself (or why it is skipped); nothing if absent."""
    try:
        lst = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(lst.st_mode):
        yield (path.rstrip("/") + "/", SKIP_DIRECTORY)
        return
    found = classify_entry(path)
    if isinstance(found, str):
        yield (path, found)
    else:
        yield ListedFile(path, found.st_size, found.st_mtime)


def literal_prefix(pattern: str) -> tuple[str, int]:
    """The pattern's text up to its first real glob character, escapes (``[[]``, ``[*]``) read as
    the characters they stand for; and the index in ``pattern`` just after the prefix's last ``/``.
    """
    out: list[str] = []
    i, after_slash = 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?":
            break
        if c == "[":
            if i + 2 < len(pattern) and pattern[i + 2] == "]" and pattern[i + 1] not in "!^]":
                out.append(pattern[i + 1])  # a one-character class: an escaped literal
                i += 3
                continue
            break
        out.append(c)
        i += 1
        if c == "/":
            after_slash = i
    return "".join(out), after_slash


def pattern_root(pattern: str) -> tuple[str, list[str]]:
    """The folder to list for a glob (escapes honoured), and the pattern's components below it."""
    literal, after_slash = literal_prefix(pattern)
    root = posixpath.dirname(literal) if "/" in literal else literal
    return root, pattern[after_slash:].split("/")


def could_hold_matches(components: Sequence[str], folders: Sequence[str]) -> bool:
    """Whether files under ``root/folders[0]/folders[1]/...`` can match the pattern's ``components``."""
    for depth, name in enumerate(folders):
        if any("**" in c for c in components[: depth + 1]):
            return True  # "**" crosses any number of folders
        if depth >= len(components) - 1:
            return False  # deeper than any file the pattern names
        if not re.match(translate_pattern(components[depth]), name):
            return False
    return True


def list_local(pattern: str, own_outputs: Sequence[tuple[int, int]] = (), *, metadata: bool = True) -> Iterator[Listed]:
    """Every entry a local pattern meets: file metadata for matches, ``(path, reason)`` for skips.

    Args:
      pattern: an absolute local path or glob, in Beam's syntax (``*`` within a folder, ``**``
        across folders).
      own_outputs: ``(st_dev, st_ino)`` of the run's own output folders (:func:`folder_id`).
      metadata: stat each file for its size and time; False: an entry the folder listing itself
        says is a regular file (no symlink) is yielded with both None, without a system call
        (about 2 µs a file); links and other entries are classified as with True.

    Yields:
      :class:`ListedFile` of each matching file (regular or not), and ``(path, reason)`` for each
      matching broken symlink, symlink loop, symlink to a folder, unreadable folder, folder of
      this tool's outputs (``path`` ending in ``/``).
    """
    if GLOB_RE.match(pattern).group(0) == pattern:
        yield from list_file(pattern)
        return
    root, components = pattern_root(pattern)
    matches = re.compile(translate_pattern(pattern)).match
    everything = components == ["**"]  # a folder's whole tree (``--input FOLDER``): each path under it matches
    root_id = folder_id(root)
    if root_id is None:
        return
    stack: list[tuple[str, tuple[int, int], tuple[str, ...]]] = [(root, root_id, ())]
    while stack:
        folder, identity, names = stack.pop()
        try:
            entries = scan_dir(folder)
        except OSError as exc:
            yield (folder + "/", _reason(UNREADABLE_FOLDER, exc))
            continue
        if is_tool_output(entries, identity, own_outputs):
            yield (folder + "/", SKIP_TOOL_OUTPUT)
            continue
        subfolders = []
        prefix = folder if not folder or folder.endswith("/") else folder + "/"  # posixpath.join's, per folder
        for index, entry in enumerate(entries):
            entries[index] = None  # an entry keeps its stat once asked: let each go once used (flat memory)
            path = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if could_hold_matches(components, (*names, entry.name)):  # never wander outside the pattern
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        yield (path + "/", SKIP_VANISHED)
                        continue
                    subfolders.append((path, (st.st_dev, st.st_ino), (*names, entry.name)))
                continue
            if not everything and not matches(path):
                continue
            if not metadata and entry.is_file(follow_symlinks=False):
                yield ListedFile(path, None, None)
                continue
            found = classify_entry(path, entry)
            yield (path, found) if isinstance(found, str) else ListedFile(path, found.st_size, found.st_mtime)
        stack.extend(reversed(subfolders))


def classify_listing(
    pattern: str, extensions: frozenset[str], own_outputs: Sequence[tuple[int, int]] = (), *, metadata: bool = True
) -> Iterator[ListedFile | tuple[str, str]]:
    """:func:`list_local` with the extension filter: each image file to score as a :class:`ListedFile`,
    every other entry as a skipped ``(path, reason)``; a name that is not UTF-8 escaped
    (:func:`~mnist_batch.files.escape_path`). What the Beam step and the in-process job both list with.
    """
    for item in list_local(pattern, own_outputs, metadata=metadata):
        if isinstance(item, tuple):
            yield (escape_path(item[0]), item[1])
            continue
        path = escape_path(item.path)
        reason = skip_reason(path, extensions)
        if reason is not None:
            yield (path, reason)
        else:
            yield item if path is item.path else ListedFile(path, item.size_in_bytes, item.last_updated_in_seconds)
