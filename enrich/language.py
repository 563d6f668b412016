"""Language identification with py3langid, whose model ships inside the package.

The model is loaded on first use, once per process, not at import. Packed (LZMA over npz), it
costs a process about a second of CPU to load: the first process on a machine unpacks it into
``NEWSFLOW_MODEL_CACHE_DIR``, one ``.npy`` file per array, and every process after it loads
those in milliseconds, the largest table mapped, not read (shared by the extraction processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import lzma
import os
import re
import shutil
import threading
from array import array
from pathlib import Path
from typing import Any

# Below this much text a guess is little better than chance, so no language is reported.
MIN_WORDS = 15
MIN_LETTERS = 80
# Posterior probability (py3langid's normalized, length-calibrated score) needed to report.
MIN_CONFIDENCE = 0.5
# Identification reads at most this much text: a few paragraphs decide it, and it bounds cost.
SAMPLE_CHARS = 1500

# The arrays of py3langid's packed model (``py3langid.modelio``), one file each when unpacked.
MODEL_ARRAYS = ("ptc", "pc", "classes", "nextmove", "nextmove_row", "out_feat")

log = logging.getLogger(__name__)
_ISO_639_1 = re.compile(r"^[a-z]{2}$")
_LETTER = re.compile(r"[^\W\d_]")
_lock = threading.Lock()
_identifier: Any = None


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                _identifier = _load_identifier()
    return _identifier


def _load_identifier() -> Any:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    from newsflow.settings import get_settings

    unreadable = (OSError, ValueError, EOFError, KeyError)
    try:
        unpacked = unpacked_model(MODEL_DIR / MODEL_FILE, get_settings().model_cache_dir)
    except unreadable as exc:
        log.warning("language model: cannot unpack it (%s); loading the packed one", exc)
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    try:
        return identifier_from(unpacked)
    except unreadable as exc:
        # Removed, so that the next process unpacks it again (mapped files stay readable).
        log.warning("language model: %s is damaged (%s); removed", unpacked, exc)
        shutil.rmtree(unpacked, ignore_errors=True)
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def unpacked_model(packed: Path, cache_dir: Path) -> Path:
    """The directory of ``packed``'s arrays under ``cache_dir``, made on first use. Named by
    the packed file's digest, so another model version gets its own; renamed into place
    whole, so a process that sees it sees all of it."""
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"py3langid-{digest}"
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = cache_dir / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        import numpy as np

        npz = building / "model.npz"  # zip needs to seek: not within the LZMA stream
        with lzma.open(packed) as source, npz.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        with np.load(npz, allow_pickle=False) as arrays:
            for name in MODEL_ARRAYS:
                np.save(building / f"{name}.npy", arrays[name], allow_pickle=False)
        npz.unlink()
        with contextlib.suppress(OSError):  # another process put its copy first: as good
            building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def identifier_from(unpacked: Path) -> Any:
    """py3langid's identifier over the unpacked arrays, what ``from_model_file`` builds."""
    import numpy as np
    from py3langid.langid import LanguageIdentifier

    def load(name: str, *, mapped: bool = False) -> Any:
        return np.load(unpacked / f"{name}.npy", mmap_mode="r" if mapped else None)

    return LanguageIdentifier(
        load("ptc", mapped=True),  # 28 MB read a few rows per page: mapped, not copied
        load("pc"),
        load("classes").tolist(),
        _int_array(load("nextmove", mapped=True)),
        load("out_feat").tolist(),
        norm_probs=True,
        tk_row=_int_array(load("nextmove_row")),
    )


def _int_array(values: Any) -> array[int]:
    """The unsigned integers as a stdlib array: the tokenizer indexes it once per byte, where
    a NumPy array's indexing would cost several times more."""
    typecode = {2: "H", 4: "I", 8: "L"}[values.dtype.itemsize]
    out = array(typecode)
    out.frombytes(memoryview(values).cast("B"))
    return out


def enough_text(text: str) -> bool:
    sample = text[:SAMPLE_CHARS]
    return len(sample.split()) >= MIN_WORDS and len(_LETTER.findall(sample)) >= MIN_LETTERS


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language, or ``None`` when unsure or too short."""
    if not enough_text(text):
        return None
    code, confidence = _get_identifier().classify(text[:SAMPLE_CHARS])
    code = str(code).lower()
    if float(confidence) < MIN_CONFIDENCE or not _ISO_639_1.match(code):
        return None
    return code
