"""Safe file and URL names for anything a model can name (layers, models)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """A lowercase ASCII slug that can never escape its folder.

    A name that does not read back from its slug (other than `_` and spaces
    becoming `-`) gets a short hash suffix, so "a/b" and "a_b", or "Conv" and
    "conv", never share a file name.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", ascii_name.lower()).strip("-")[:60] or "unnamed"
    if re.sub(r"[_ ]", "-", name) != slug:
        slug = f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return slug
