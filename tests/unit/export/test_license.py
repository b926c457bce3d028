"""The export's LICENSE: Apache-2.0's full text (apache.org's file, byte for byte), a pointer for other SPDX
licences, a plain statement for any other id."""

from __future__ import annotations

import hashlib

from cgpt.export.license import hub_license, license_text, spdx_id

#: sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt
APACHE_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_apache_is_the_full_text_in_any_case():
    for spelling in ("apache-2.0", "Apache-2.0", " APACHE-2.0 "):
        text = license_text(spelling, "cgpt/default")
        assert hashlib.sha256(text.encode()).hexdigest() == APACHE_SHA256
    assert hub_license("Apache-2.0") == "apache-2.0"


def test_other_spdx_ids_name_the_licence_and_its_url():
    assert spdx_id("cc-by-4.0") == "CC-BY-4.0" and spdx_id("mit") == "MIT"
    text = license_text("mit", "cgpt/default")
    assert "cgpt/default" in text and "MIT licence" in text and "https://spdx.org/licenses/MIT.html" in text


def test_a_non_spdx_id_says_the_text_must_be_added():
    assert spdx_id("other") is None
    text = license_text("llama2", "cgpt/default")
    assert "'llama2'" in text and "replace it with the licence's full text" in text
