"""One document through the recipe's text fixing: ``ftfy.fix_text(text, normalization="NFC")``."""

from __future__ import annotations

import unicodedata

from cgpt.data.clean.params import CleanParams


def clean_text(text: str, params: CleanParams) -> str:
    """``ftfy.fix_text(text, normalization=...)`` (or only the Unicode normalization when
    ``fix_text`` is off). Lone surrogates become U+FFFD first (they cannot be written as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if params.fix_text:
        import ftfy

        return ftfy.fix_text(text, normalization=params.normalization)
    if params.normalization:
        return unicodedata.normalize(params.normalization, text)
    return text
