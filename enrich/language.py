"""Language identification with py3langid, whose model ships inside the package.

The model (a few MB, ~0.3 s to load) is loaded on first use, once per process, not at import.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# Below this much text a guess is little better than chance, so no language is reported.
MIN_WORDS = 15
MIN_LETTERS = 80
# Posterior probability (py3langid's normalized, length-calibrated score) needed to report.
MIN_CONFIDENCE = 0.5
# Identification reads at most this much text: a few paragraphs decide it, and it bounds cost.
SAMPLE_CHARS = 1500

_ISO_639_1 = re.compile(r"^[a-z]{2}$")
_LETTER = re.compile(r"[^\W\d_]")
_lock = threading.Lock()
_identifier: Any = None


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


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
