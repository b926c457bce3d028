"""One document through the recipe's text fixing: ``ftfy.fix_text(text, normalization="NFC")``.

ftfy runs at a few MB/s per core, yet most documents of a real corpus are plain ASCII that ftfy returns
unchanged. :func:`clean_text` therefore skips ftfy for every *line* that ftfy provably leaves as it is
and calls ``ftfy.fix_text`` on the other lines only; the output is the same string as plain per-document
ftfy, character for character (``tests/unit/data/test_fix_text.py`` checks this on the benchmark's mixed corpus and
on a fuzzed one).

Why ASCII lines are fixed points (read in ftfy 6.3.1; the same code in 6.2.0-6.3.0, see
:data:`VERIFIED_FTFY_VERSIONS`). ``ftfy.fix_and_explain`` runs these steps, in this order, and repeats
them until the text stops changing. For a string ``s`` of ASCII characters (all < U+0080) each step is
the identity under the condition given:

* ``fixes.unescape_html`` (only when ``unescape_html`` is on; fix_text's "auto" turns it off once a ``<``
  was seen): ``chardata.HTML_ENTITY_RE.sub(...)``, identity when ``HTML_ENTITY_RE``
  (``&#?[0-9A-Za-z]{1,24};``) has no match in ``s``. Condition: no such match (``&`` alone is fine,
  ``AT&T`` stays ``AT&T``; a ``<`` is fine as it only turns this step off).
* ``fix_encoding`` -> ``_fix_encoding_one_step_and_explain``: returns its input when it is empty or when
  ``chardata.possible_encoding(s, "ascii")`` (``^[\\x00-\\x7f]*$``) matches. Always the identity.
* ``fixes.fix_c1_controls`` (``[\\x80-\\x9f]``), ``fix_latin_ligatures`` (``LIGATURES``: U+0132...U+FB06),
  ``fix_character_width`` (``WIDTH_MAP``: U+3000, U+FF01-U+FFEF), ``uncurl_quotes`` (U+02BC,
  U+2018-U+201F), ``fix_surrogates`` (U+D800-U+DFFF): they only touch non-ASCII characters. Always
  the identity.
* ``fixes.fix_line_breaks``: replaces ``\\r\\n``, ``\\r``, U+2028, U+2029, U+0085 by ``\\n``. Condition:
  no ``\\r``.
* ``fixes.remove_terminal_escapes``: ``ANSI_RE`` starts with ``\\x1b``. Condition: no ``\\x1b`` (implied
  by the next one).
* ``fixes.remove_control_chars``: deletes ``chardata.CONTROL_CHARS``, whose ASCII members are U+0000-U+0008,
  U+000B, U+000E-U+001F and U+007F. Condition: none of those (``\\t``, ``\\n``, ``\\x0c`` are kept).
* ``unicodedata.normalize(form, s)`` for NFC, NFD, NFKC and NFKD: every ASCII character has no canonical
  or compatibility decomposition, combining class 0, and Quick_Check=Yes in all four forms, and no
  composition pair is made of ASCII characters only, so a pure ASCII string is already in every
  normalization form and comes back unchanged (``normalization=None`` skips the step anyway).

So an ASCII ``s`` without U+0000-U+0008, U+000B, U+000D-U+001F, U+007F and without an
``HTML_ENTITY_RE`` match passes every step unchanged, the first round of fix_and_explain's loop ends
with ``text == origtext``, and ``fix_and_explain(s)`` returns ``s`` whatever ``normalization`` is.
Also ASCII has no lone surrogates, so clean_text's U+FFFD step is the identity too. With
``fix_text: false`` only the normalization runs, and every ASCII document is a fixed point of it.

Why per line is exact. ``ftfy.fix_text`` cuts the text into segments: each line with its ``\\n``, and a
line longer than ``max_decode_length`` (10^6) into pieces counted from the line's start; it fixes
each segment alone with ``fix_and_explain(segment, config)`` and joins the results. The only state
carried from one segment to the next is that ``unescape_html="auto"`` becomes ``False`` from the first
segment that contains ``<`` on. So :func:`fix_text_by_lines` keeps each fixed-point line as it is (a
check on a whole line holds for each of its pieces: every condition above is about characters or
matches the piece would contain too) and passes each maximal run of other lines, which starts at a
line start and so is cut into the same segments, to ``ftfy.fix_text`` with ``unescape_html=False``
when a ``<`` came earlier in the document, which is the config ftfy itself would have used there.

These facts are read from ftfy's source, so the fast path is on only for the ftfy versions in
:data:`VERIFIED_FTFY_VERSIONS`; with any other version every document goes through plain ftfy (correct,
slower) and a warning says so, and ``tests/unit/data/test_fix_text.py`` fails until the list is re-verified.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings

from cgpt.data.clean.params import CleanParams, Normalization

# Versions whose fix_text, fix_and_explain, fix_encoding*, fixers and chardata tables were compared
# (AST, annotations aside) with 6.3.1: they differ only in a charmap encoding added in 6.3.0, which
# ASCII never reaches (possible_encoding(s, "ascii") returns first).
VERIFIED_FTFY_VERSIONS: frozenset[str] = frozenset({"6.2.0", "6.2.1", "6.2.2", "6.2.3", "6.3.0", "6.3.1"})

# The ASCII characters some ftfy step changes: remove_control_chars (U+0000-U+0008, U+000B,
# U+000E-U+001F, U+007F; U+001B covers remove_terminal_escapes) and fix_line_breaks (U+000D).
# str.translate deletes them; an unchanged length means none was there (~1.5 GB/s on ASCII).
_FTFY_ASCII_CHANGES: dict[int, None] = dict.fromkeys([*range(0x00, 0x09), 0x0B, *range(0x0D, 0x20), 0x7F])

# ftfy.chardata.HTML_ENTITY_RE (the test checks it is the same pattern): unescape_html only touches its matches.
_HTML_ENTITY_RE = re.compile(r"&#?[0-9A-Za-z]{1,24};")


def is_ftfy_fixed_point(text: str) -> bool:
    """True when ``ftfy.fix_text(text, normalization=...)`` provably returns ``text`` for every
    normalization (see the module docstring): ASCII, no control character ftfy removes or rewrites
    and no HTML entity. ``isascii`` is O(1) on CPython strings, the rest is one translate and a memchr."""
    return (
        text.isascii()
        and len(text.translate(_FTFY_ASCII_CHANGES)) == len(text)
        and ("&" not in text or _HTML_ENTITY_RE.search(text) is None)
    )


@functools.cache
def ftfy_fast_path_enabled() -> bool:
    """Whether the installed ftfy is one whose source the fixed-point proof was read from."""
    import ftfy

    if ftfy.__version__ in VERIFIED_FTFY_VERSIONS:
        return True
    warnings.warn(
        f"ftfy {ftfy.__version__} is not among the versions the clean fast path was verified against "
        f"({', '.join(sorted(VERIFIED_FTFY_VERSIONS))}): every document goes through ftfy (same output, slower)",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


def fix_text_by_lines(text: str, normalization: Normalization | None) -> str:
    """``ftfy.fix_text(text, normalization=normalization)``, calling ftfy only on runs of lines that are
    not fixed points. Exact because fix_text fixes segments (lines) independently apart from the
    sticky ``unescape_html=False`` after a ``<`` (module docstring)."""
    out: list[str] = []
    n = len(text)
    pos = 0
    run_start = -1  # start of the pending run of lines for ftfy; -1 when there is none
    run_after_lt = False  # a "<" came before that run: ftfy fixes it with unescape_html=False
    seen_lt = False
    while pos < n:
        end = text.find("\n", pos) + 1 or n
        line = text[pos:end]
        if is_ftfy_fixed_point(line):
            if run_start >= 0:
                out.append(_ftfy_run(text[run_start:pos], normalization, run_after_lt))
                run_start = -1
            out.append(line)
        elif run_start < 0:
            run_start, run_after_lt = pos, seen_lt
        seen_lt = seen_lt or "<" in line
        pos = end
    if run_start >= 0:
        out.append(_ftfy_run(text[run_start:], normalization, run_after_lt))
    return "".join(out)


def _ftfy_run(run: str, normalization: Normalization | None, after_lt: bool) -> str:
    """ftfy.fix_text on a run of whole lines, with the unescape_html state ftfy would have reached there."""
    import ftfy

    if after_lt:
        return ftfy.fix_text(run, normalization=normalization, unescape_html=False)
    return ftfy.fix_text(run, normalization=normalization)


def clean_text(text: str, params: CleanParams) -> str:
    """``ftfy.fix_text(text, normalization=...)`` (or only the Unicode normalization when
    ``fix_text`` is off). Lone surrogates become U+FFFD first (they cannot be written as UTF-8).

    Fast path: a document ftfy provably returns unchanged is returned as it is, and otherwise only
    its lines that are not fixed points go through ftfy; the result is the same string either way."""
    if text.isascii() and (not params.fix_text or (ftfy_fast_path_enabled() and is_ftfy_fixed_point(text))):
        return text  # ASCII: no surrogates, every normalization is the identity, and ftfy changes nothing
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if params.fix_text:
        if ftfy_fast_path_enabled():
            return fix_text_by_lines(text, params.normalization)
        import ftfy

        return ftfy.fix_text(text, normalization=params.normalization)
    if params.normalization:
        return unicodedata.normalize(params.normalization, text)
    return text
