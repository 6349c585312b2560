"""Safe file and URL names for anything a model can name (layers, models)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def slugify(name: str) -> str:
    """A lowercase ASCII slug that can never escape its folder.

    A name that is not already a slug gets a short hash suffix, so "a/b" and
    "a-b", or "Conv" and "conv", never share a file name.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", ascii_name.lower()).strip("-_")[:60] or "unnamed"
    if name != slug:
        slug = f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return slug
