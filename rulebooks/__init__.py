"""Versioned rule data (rules.md). Each `*.toml` here is one immutable rulebook version.

`load(name)` reads and validates a rulebook, rejecting unknown keys, wrong types and values out
of range with a message naming the key. The content hash is the SHA-256 of the canonical JSON of
the validated content, so two files that say the same thing have the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from models.rules import PinnedRules, Rulebook

BUILTIN_DIR = Path(__file__).parent
DEFAULT_PROPOSAL_RULEBOOK = "seoul-2018"
DEFAULT_DELIBERATION_RULEBOOK = "seoul-2020"

__all__ = [
    "DEFAULT_DELIBERATION_RULEBOOK",
    "DEFAULT_PROPOSAL_RULEBOOK",
    "PinnedRules",
    "Rulebook",
    "RulebookError",
    "load",
]

_adapter = TypeAdapter(Rulebook)
#: A rulebook is asked for by name, never by path: nothing a caller sends can leave the
#: rulebook directories.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class RulebookError(ValueError):
    """A rulebook is missing or invalid; the message says which key and why."""


def _search_dirs(extra_dirs: Iterable[str]) -> list[Path]:
    return [BUILTIN_DIR, *(Path(d) for d in extra_dirs)]


def available(extra_dirs: Iterable[str] = ()) -> list[str]:
    names = {p.stem for d in _search_dirs(extra_dirs) for p in d.glob("*.toml")}
    return sorted(names)


def parse(text: str, *, expected_name: str | None = None, origin: str = "<text>") -> PinnedRules:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulebookError(f"{origin}: not valid TOML: {exc}") from exc
    try:
        rulebook = _adapter.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise RulebookError(f"{origin}: {problems}") from exc
    if expected_name is not None and rulebook.name != expected_name:
        raise RulebookError(
            f"{origin}: name is {rulebook.name!r} but the file is named {expected_name!r}"
        )
    if rulebook.proposal and rulebook.proposal.min_voters > rulebook.proposal.max_voters:
        raise RulebookError(f"{origin}: proposal.min_voters is greater than proposal.max_voters")
    return PinnedRules(name=rulebook.name, content_hash=content_hash(rulebook), rulebook=rulebook)


def as_json(rulebook: Rulebook) -> dict[str, Any]:
    """The rulebook's content; absent sections are left out, so adding a kind of section to
    the schema does not change the hash of rulebooks that do not use it."""
    return {k: v for k, v in dataclasses.asdict(rulebook).items() if v is not None}


_pinned_content: dict[str, Rulebook] = {}


def cached(content_hash: str) -> Rulebook | None:
    """The rulebook of `content_hash` if this process has read it back before (`from_json`):
    a hot path may then skip reading the pinned content at all."""
    return _pinned_content.get(content_hash)


def from_json(content: dict[str, Any], *, content_hash: str) -> Rulebook:
    """A rulebook back from the content a case pinned (`as_json`), typed again; validated once
    per content hash (a hot path, such as a support, asks for the same few rulebooks)."""
    rulebook = _pinned_content.get(content_hash)
    if rulebook is None:
        rulebook = _pinned_content[content_hash] = _adapter.validate_python(content)
    return rulebook


def content_hash(rulebook: Rulebook) -> str:
    canonical = json.dumps(
        as_json(rulebook), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@lru_cache(maxsize=64)
def _load(name: str, extra_dirs: tuple[str, ...]) -> PinnedRules:
    known = available(extra_dirs)
    if _NAME.fullmatch(name) is None or ".." in name or name not in known:
        raise RulebookError(f"unknown rulebook {name!r}; available: {', '.join(known)}")
    for directory in _search_dirs(extra_dirs):
        path = directory / f"{name}.toml"
        if path.is_file():
            # The origin names the rulebook, not the file: errors reach API callers.
            return parse(
                path.read_text(encoding="utf-8"), expected_name=name, origin=f"rulebook {name}"
            )
    raise RulebookError(f"unknown rulebook {name!r}; available: {', '.join(known)}")


def load(name: str, extra_dirs: Iterable[str] = ()) -> PinnedRules:
    return _load(name, tuple(extra_dirs))
