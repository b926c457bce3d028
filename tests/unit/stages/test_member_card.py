"""A family member's model card describes the member: the corpus's document count (the clean stage's,
at the root), the family's byte tokenizer, and its folder under family/runs/."""

from __future__ import annotations

import json
import shutil

from paths import REPO

from cgpt.core.project import Project
from cgpt.family.members import member_params
from cgpt.model.params import build_model_config
from cgpt.stages import stage_params
from cgpt.stages.export import card_facts
from cgpt.stages.member import member_view


def test_a_members_card_names_its_corpus_tokenizer_and_folder(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "clean.json").write_text(json.dumps({"total": {"documents_out": 42}}))
    root = Project.at(tmp_path)
    params = member_params(root.load(member_view("export")), "fam-d24", 257, tmp_path, view=stage_params("export"))
    facts = card_facts(root.for_family(), params, build_model_config(params.model, 257), "a sample")
    assert facts.data["documents"] == 42
    assert facts.tokenizer.startswith("bytes: a byte-level BPE without merges") and "257" in facts.tokenizer
    assert facts.folder == "family/runs/fam-d24/hf"
