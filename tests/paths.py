"""Where the tests find the repo, their fixtures and the optional ``../shared`` (from any tier)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
EVAL_FIXTURES = FIXTURES / "eval"
SHARED = REPO.parent / "shared"  # optional: tests that need it skip without it
SHARED_EVAL = SHARED / "eval-data"
GPT2_TOKENIZER = SHARED / "gpt2-tokenizer"
