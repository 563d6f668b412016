"""The language model unpacked once per machine: the same identifier as py3langid's own
loader, made once and reused, and the packed model when no copy can be written."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

from enrich import language
from newsflow.settings import Settings, get_settings

TEXTS = [
    "The council said the bridge would reopen on Monday after six months of repairs.",
    "Der Stadtrat teilte mit, dass die Brücke nach sechs Monaten Reparatur wieder öffnet.",
    "Le conseil a annoncé que le pont rouvrirait lundi après six mois de travaux.",
    "Городской совет сообщил, что мост откроется в понедельник после ремонта.",
    "市议会表示，这座桥在维修六个月后将于周一重新开放。",
]


@pytest.fixture(scope="module")
def packed() -> Any:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@pytest.fixture
def fresh_identifier() -> Iterator[None]:
    """The module's identifier and the settings read anew, and restored after."""
    saved = language._identifier
    language._identifier = None
    get_settings.cache_clear()
    yield
    language._identifier = saved
    get_settings.cache_clear()


def test_the_unpacked_model_is_the_packed_one(packed: Any, tmp_path: Path) -> None:
    unpacked = language.identifier_from(language.unpacked_model(MODEL_DIR / MODEL_FILE, tmp_path))
    assert np.array_equal(unpacked.nb_ptc, packed.nb_ptc)
    assert np.array_equal(unpacked.nb_pc, packed.nb_pc)
    assert unpacked.nb_classes == packed.nb_classes
    assert unpacked.tk_nextmove == packed.tk_nextmove
    assert unpacked.tk_row == packed.tk_row
    assert unpacked.tk_output == packed.tk_output
    assert [unpacked.classify(t) for t in TEXTS] == [packed.classify(t) for t in TEXTS]


def test_the_model_is_unpacked_once_and_whole(tmp_path: Path) -> None:
    first = language.unpacked_model(MODEL_DIR / MODEL_FILE, tmp_path)
    written = {path.name: path.stat().st_mtime_ns for path in first.iterdir()}
    assert sorted(written) == sorted(f"{name}.npy" for name in language.MODEL_ARRAYS)
    again = language.unpacked_model(MODEL_DIR / MODEL_FILE, tmp_path)
    assert again == first
    assert {path.name: path.stat().st_mtime_ns for path in again.iterdir()} == written
    assert [path.name for path in tmp_path.iterdir()] == [first.name], "no work files left"


def test_an_unwritable_cache_falls_back_to_the_packed_model(
    packed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_identifier: None
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NEWSFLOW_MODEL_CACHE_DIR", str(blocker / "cache"))
    identifier = language._get_identifier()
    assert [identifier.classify(t) for t in TEXTS] == [packed.classify(t) for t in TEXTS]


def test_a_damaged_copy_falls_back_to_the_packed_model_and_is_removed(
    packed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_identifier: None
) -> None:
    unpacked = language.unpacked_model(MODEL_DIR / MODEL_FILE, tmp_path)
    (unpacked / "pc.npy").write_bytes(b"\x93NUMPY truncated")
    monkeypatch.setenv("NEWSFLOW_MODEL_CACHE_DIR", str(tmp_path))
    identifier = language._get_identifier()
    assert [identifier.classify(t) for t in TEXTS] == [packed.classify(t) for t in TEXTS]
    assert not unpacked.exists(), "removed: the next process unpacks it again"


def test_the_cache_is_the_users_and_a_user_without_a_home_still_gets_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NEWSFLOW_MODEL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Settings().model_cache_dir == tmp_path / "newsflow"
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert Settings().model_cache_dir == Path(tempfile.gettempdir()) / "newsflow"
