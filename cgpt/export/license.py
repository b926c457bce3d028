"""The ``LICENSE`` file of an export, from ``export.license``.

``export.license`` is a licence id as the Hugging Face Hub spells it in a card's front matter (``apache-2.0``,
``mit``, ``cc-by-4.0``, ``other``...), accepted in any case, so an SPDX id (``Apache-2.0``) works too. The
export ships:

* Apache-2.0 (the default, Cerebras-GPT's licence): the licence's full text, shipped with cgpt as package
  data (``cgpt/export/licenses/Apache-2.0.txt``, apache.org's file byte for byte, sha256 pinned by a test);
* another SPDX id: a short file naming the licence and its canonical text's URL on spdx.org (cgpt does not
  carry every licence's text);
* any other id (``other``, a model-specific licence): a short file naming the id and saying the text must
  be added.

The same text becomes the MLflow logged model's ``LICENSE.txt`` (instead of MLflow's boilerplate, which
tells the reader to look the model up on the Hugging Face Hub by its local path).
"""

from __future__ import annotations

from importlib.resources import files

#: SPDX ids (their canonical spelling) of the licences the Hub lists that are SPDX licences too
SPDX_IDS = (
    "Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear", "BSL-1.0", "ISC", "Zlib",
    "Unlicense", "WTFPL", "MPL-2.0", "EPL-1.0", "EPL-2.0", "ECL-2.0", "AFL-3.0", "OSL-3.0", "Artistic-2.0",
    "GPL-2.0", "GPL-3.0", "LGPL-2.1", "LGPL-3.0", "AGPL-3.0", "EUPL-1.1", "EUPL-1.2", "LPPL-1.3c", "MS-PL",
    "NCSA", "PostgreSQL", "OFL-1.1", "CC0-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0", "CC-BY-4.0",
    "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-2.0", "CC-BY-NC-3.0", "CC-BY-NC-4.0", "CC-BY-ND-4.0",
    "CC-BY-NC-ND-3.0", "CC-BY-NC-ND-4.0", "CC-BY-NC-SA-2.0", "CC-BY-NC-SA-3.0", "CC-BY-NC-SA-4.0",
    "CDLA-Sharing-1.0", "CDLA-Permissive-1.0", "CDLA-Permissive-2.0", "ODbL-1.0", "PDDL-1.0", "ODC-By-1.0",
)  # fmt: skip
_BY_LOWER = {s.lower(): s for s in SPDX_IDS}
#: licences whose full text cgpt ships (file name = SPDX id)
SHIPPED_TEXTS = ("Apache-2.0",)


def spdx_id(license_id: str) -> str | None:
    """The canonical SPDX spelling of ``license_id`` (any case), or None when it is not an SPDX licence."""
    return _BY_LOWER.get(license_id.strip().lower())


def hub_license(license_id: str) -> str:
    """The id as the Hugging Face Hub's card metadata spells licences: lower case (``apache-2.0``)."""
    return license_id.strip().lower()


def license_text(license_id: str, model_name: str) -> str:
    """What the export's ``LICENSE`` holds for ``export.license`` = ``license_id`` (see the module doc)."""
    spdx = spdx_id(license_id)
    if spdx in SHIPPED_TEXTS:
        return files("cgpt.export").joinpath("licenses", f"{spdx}.txt").read_text(encoding="utf-8")
    if spdx is not None:
        return (
            f"The model weights of {model_name} are released under the {spdx} licence (SPDX identifier "
            f"{spdx}).\n\nThe licence's full text: https://spdx.org/licenses/{spdx}.html\n"
        )
    return (
        f"The model weights of {model_name} are released under the licence '{license_id}' (export.license in "
        "params.yaml; not an SPDX identifier).\n\nThis file does not contain that licence's text: replace it with "
        "the licence's full text before you distribute the model. Hugging Face Hub licence ids: "
        "https://huggingface.co/docs/hub/repositories-licenses\n"
    )
