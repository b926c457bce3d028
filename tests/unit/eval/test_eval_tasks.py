"""Prompts, few-shot draws, boundary tokenization, metrics and bad-data errors of the downstream tasks.

Expected prompts are written out by hand from shared/spec/lm-eval-procedures.md section 1.2 and the
fixture rows (tests/fixtures/eval, copied from shared/eval-data).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
from paths import EVAL_FIXTURES

from cgpt.core.errors import DataError
from cgpt.data.tokenize.tokenizer import load_tokenizer
from cgpt.eval.downstream import build_requests
from cgpt.eval.encoding import TokenizersEncoder, encode_pairs, split_trailing_space
from cgpt.eval.fewshot import FewshotSampler
from cgpt.eval.metrics import bootstrap_perplexity_stderr, mean_stderr, multiple_choice_metrics, perplexity
from cgpt.eval.taskdata import TaskData, read_jsonl
from cgpt.eval.tasks import TASK_REGISTRY, Doc, get_task, hellaswag_preprocess, requests_for, shot_text

FIXTURES = EVAL_FIXTURES
DATA = TaskData(FIXTURES)


def _docs(task: str, split: str | None = None):
    t = get_task(task)
    return t, DATA.load(t, split or t.eval_split)


# ------------------------------------------------------------------------------------------ prompts


def test_task_splits_and_pools_follow_the_yamls():
    assert list(TASK_REGISTRY) == [
        "hellaswag",
        "piqa",
        "winogrande",
        "lambada_openai",
        "arc_easy",
        "arc_challenge",
        "openbookqa",
    ]
    evals = {t.name: t.eval_split for t in TASK_REGISTRY.values()}
    assert evals == {
        "hellaswag": "validation",
        "piqa": "validation",
        "winogrande": "validation",
        "lambada_openai": "test",
        "arc_easy": "test",
        "arc_challenge": "test",
        "openbookqa": "test",
    }
    pools = {t.name: t.fewshot_split for t in TASK_REGISTRY.values()}
    assert pools["lambada_openai"] == "test" and all(v == "train" for k, v in pools.items() if k != "lambada_openai")
    excl = {t.name for t in TASK_REGISTRY.values() if t.excludes_eval_doc}
    assert excl == {"hellaswag", "piqa", "winogrande"}


def test_hellaswag_prompt_capitalises_ctx_b_and_cleans_brackets():
    task, docs = _docs("hellaswag")
    reqs = requests_for(task, docs[0], "")
    assert reqs[0] == ("Roof shingle removal: A man is sitting on a roof. He", " is using wrap to wrap a pair of skis.")
    assert [c for _, c in reqs][1:] == [
        " is ripping level tiles off.",
        " is holding a rubik's cube.",
        " starts pulling up roofing on a roof.",
    ]
    assert task.gold(docs[0]) == 3
    cleaned = hellaswag_preprocess(" [header] How to x [title] Obtain it. [step] Then  go. ")
    assert cleaned == " How to x. Obtain it. Then go."  # the space before the removed [header] stays
    wikihow = docs[3]
    assert "[" not in wikihow.text and all("[" not in c for c in wikihow.choices)


def test_piqa_arc_openbookqa_prompts():
    t, d = _docs("piqa")
    question = "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert requests_for(t, d[0], "")[0][0] == question
    assert requests_for(t, d[1], "") == [
        ("Question: dresser\nAnswer:", " replace drawer with bobby pin "),
        ("Question: dresser\nAnswer:", " finish, woodgrain with  bobby pin "),
    ]
    assert t.gold(d[1]) == 1
    t, d = _docs("arc_easy")
    assert requests_for(t, d[0], "")[0] == (
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:",
        " Sunlight is the source of energy for nearly all ecosystems.",
    )
    numeric = d[3]  # a row labelled "1".."4"
    assert numeric.raw["choices"]["label"][0] == "1"
    assert t.gold(numeric) == numeric.raw["choices"]["label"].index(numeric.raw["answerKey"])
    assert {len(x.choices) for x in d} == {3, 4, 5}
    t, d = _docs("openbookqa")
    assert requests_for(t, d[1], "")[0] == ("There is most likely going to be fog around:", " a marsh")
    assert t.gold(d[0]) == 1  # answerKey "B"


def test_winogrande_has_one_context_per_option_and_a_shared_continuation():
    t, d = _docs("winogrande")
    assert requests_for(t, d[0], "") == [
        ("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
        ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."),
    ]
    assert t.gold(d[0]) == 1  # answer "2"
    assert shot_text(t, d[0]) == "Sarah was a much better surgeon than Maria so Maria always got the easier cases.\n\n"


def test_lambada_splits_on_one_space_and_its_shot_has_two_spaces():
    t = get_task("lambada_openai")
    doc = t.parse({"text": "a  b c\nd end"}, 0, "x:1")
    assert requests_for(t, doc, "") == [("a  b c\nd", " end")]
    assert shot_text(t, doc) == "a  b c\nd  end\n\n"  # context + " " + " end": the harness's double space


def test_fewshot_prefix_and_delimiters():
    t, d = _docs("arc_easy")
    shots = d[1:3]
    reqs = requests_for(t, d[0], "".join(shot_text(t, s) for s in shots))
    first = f"{shots[0].text} {shots[0].choices[shots[0].target]}\n\n"
    assert reqs[0][0].startswith(first) and reqs[0][0].endswith("\n\n" + d[0].text)
    assert reqs[0][1] == " " + d[0].choices[0]


# ------------------------------------------------------------------------------------------- few-shot


def test_sampler_draws_k_in_document_order_without_exclusion():
    t, pool = _docs("arc_easy", "train")
    docs = DATA.load(t, "test")
    sampler = FewshotSampler(pool, exclude_eval_doc=False, seed=1234)
    rnd = random.Random(1234)
    for doc in docs:
        assert [s.index for s in sampler.sample(5, doc)] == [s.index for s in rnd.sample(pool, 5)]


def test_sampler_k_plus_one_rule_drops_the_evaluated_document():
    t, pool = _docs("piqa", "train")
    target = pool[4]
    sampler = FewshotSampler(pool, exclude_eval_doc=True, seed=1234)
    rnd = random.Random(1234)
    for _ in range(30):  # several documents in a row: the stream advances by k+1 each time
        drawn = rnd.sample(pool, 6)
        want = [x for x in drawn if x.raw != target.raw][:5]
        if len(want) < 5:
            want = rnd.sample([x for x in pool if x.raw != target.raw], 5)
        got = sampler.sample(5, target)
        assert [s.index for s in got] == [s.index for s in want] and target.index not in [s.index for s in got]


def test_sampler_with_duplicates_of_the_document_redraws():
    base = {"goal": "g", "sol1": "a", "sol2": "b", "label": 0}
    t = get_task("piqa")
    pool = [t.parse(dict(base), i, "x") for i in range(4)] + [
        t.parse({**base, "goal": f"o{i}"}, 4 + i, "x") for i in range(6)
    ]
    sampler = FewshotSampler(pool, exclude_eval_doc=True, seed=7)
    for _ in range(20):
        got = sampler.sample(5, pool[0])
        assert len(got) == 5 and all(s.raw != base for s in got)


def test_zero_shots_consume_no_randomness_and_pools_too_small_are_errors():
    t, pool = _docs("winogrande", "train")
    assert build_requests(t, DATA.load(t, "validation"), None, 0)[0][0][0].startswith("Sarah")
    with pytest.raises(DataError, match="pool has 12 documents; 12 shots need at least 13"):
        FewshotSampler(pool, exclude_eval_doc=True).sample(12, pool[0])


def test_hellaswag_with_validation_as_pool_excludes_itself():
    """With no train split the pool is the evaluated split itself; the k+1 rule keeps each document out."""
    t = replace(get_task("hellaswag"), training_split=None)
    docs = DATA.load(t, "validation")
    per_doc = build_requests(t, docs, docs, 5)
    for doc, reqs in zip(docs, per_doc):
        shots = reqs[0][0].split("\n\n")[:-1]
        assert len(shots) == 5 and not any(s.startswith(doc.text + " ") for s in shots)


# ------------------------------------------------------------------------------------- tokenization


def test_trailing_space_moves_to_the_continuation():
    assert split_trailing_space("Answer: \n", "yes") == ("Answer:", " \nyes")
    assert split_trailing_space("Answer:", " yes") == ("Answer:", " yes")


def test_continuation_is_whole_minus_context(gpt2_tokenizer_dir):
    tok = load_tokenizer(gpt2_tokenizer_dir)
    enc = TokenizersEncoder(tok)
    # "The cats are": the context's last token "Ġcat" is not a prefix token of "Ġcats", so the
    # harness's rule scores only " are" (the "s" is lost), unlike encode("s are").
    ((ctx, cont),) = encode_pairs(enc, [("The cat", "s are")])
    assert ctx == tok.encode("The cat").ids
    assert cont == tok.encode("The cats are").ids[len(ctx) :] != tok.encode("s are").ids
    ((ctx, cont),) = encode_pairs(enc, [("Hello ", "world")])
    assert ctx == [15496] and cont == [995]  # "Hello" + " world"
    ((ctx, cont),) = encode_pairs(enc, [("", "Hello world")])
    assert ctx == [50256] and cont == [15496, 995]  # empty context: the prefix token <|endoftext|>


# ------------------------------------------------------------------------------------------ metrics


def test_acc_norm_divides_by_characters_of_the_choice():
    assert multiple_choice_metrics([-2.0, -4.0], ["a", "bbbb"], 0) == (1.0, 0.0)
    assert multiple_choice_metrics([-2.0, -4.0], ["a", "bbbb"], 1) == (0.0, 1.0)
    assert multiple_choice_metrics([-3.0, -3.0], ["ab", "cd"], 0) == (1.0, 1.0)  # ties: the first index


def test_stderr_and_perplexity_formulas():
    xs = [1.0, 0.0, 1.0, 1.0]
    mu = 0.75
    assert mean_stderr(xs) == pytest.approx(math.sqrt(sum((x - mu) ** 2 for x in xs) / 3) / 2)
    assert mean_stderr([1.0]) is None
    assert perplexity([-1.0, -3.0]) == pytest.approx(math.exp(2.0))


def _bootstrap_reference(lls: list[float], iters: int) -> float:
    """The harness's bootstrap written out in plain Python (api/metrics.py bootstrap_stderr)."""
    chunk = min(1000, iters)
    reps = []
    for i in range(iters // chunk):
        rnd = random.Random(i)
        for _ in range(chunk):
            s = rnd.choices(lls, k=len(lls))
            reps.append(math.exp(-(sum(s) / len(s))))
    mu = sum(reps) / len(reps)
    return math.sqrt(sum((r - mu) ** 2 for r in reps) / (len(reps) - 1))


@pytest.mark.parametrize("iters", [300, 2000, 2500])
def test_bootstrap_stderr_is_the_harness_draw_for_draw(iters):
    r = random.Random(3)
    lls = [-r.random() * 8 for _ in range(37)]
    assert bootstrap_perplexity_stderr(lls, iters) == _bootstrap_reference(lls, iters)
    assert bootstrap_perplexity_stderr(lls, 0) is None and bootstrap_perplexity_stderr(lls[:1], 100) is None


@pytest.mark.crosscheck
def test_bootstrap_matches_installed_lm_eval(monkeypatch):
    metrics = pytest.importorskip("lm_eval.api.metrics", reason="lm-eval not installed (pip install -e .[crosscheck])")
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")
    r = random.Random(5)
    lls = [-r.random() * 8 for _ in range(200)]
    assert bootstrap_perplexity_stderr(lls, 2000) == metrics.bootstrap_stderr(metrics.perplexity, lls, iters=2000)
    assert mean_stderr([1.0, 0.0, 0.0]) == metrics.mean_stderr([1.0, 0.0, 0.0])


# ----------------------------------------------------------------------------------------- bad data


def _write(tmp: Path, task: str, split: str, lines: list[str]) -> TaskData:
    (tmp / task).mkdir(parents=True, exist_ok=True)
    (tmp / task / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return TaskData(tmp)


GOOD = {
    "piqa": {"goal": "g", "sol1": "a", "sol2": "b", "label": 1},
    "arc_easy": {"id": "x", "question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"},
    "hellaswag": {
        "ind": 1,
        "activity_label": "x",
        "ctx_a": "a",
        "ctx_b": "b",
        "ctx": "a b",
        "endings": ["1", "2", "3", "4"],
        "source_id": "s",
        "split": "val",
        "split_type": "indomain",
        "label": "2",
    },
    "winogrande": {"sentence": "A _ b", "option1": "x", "option2": "y", "answer": "1"},
}


@pytest.mark.parametrize(
    "task, split, bad, message",
    [
        ("piqa", "validation", '{"goal": "g", ', "validation.jsonl:2: invalid JSON"),
        ("piqa", "validation", "[1, 2]", "validation.jsonl:2: expected a JSON object"),
        (
            "piqa",
            "validation",
            json.dumps({"goal": "g", "sol1": "a", "label": 0}),
            "validation.jsonl:2: missing field 'sol2'",
        ),
        (
            "piqa",
            "validation",
            json.dumps({**GOOD["piqa"], "label": 2}),
            "validation.jsonl:2: gold label 2 is out of range",
        ),
        ("piqa", "validation", json.dumps({**GOOD["piqa"], "label": "1"}), "field 'label' is str"),
        (
            "arc_easy",
            "test",
            json.dumps({**GOOD["arc_easy"], "answerKey": "E"}),
            "test.jsonl:2: gold label answerKey 'E'",
        ),
        ("hellaswag", "validation", json.dumps({**GOOD["hellaswag"], "label": "4"}), "gold label '4' is out of range"),
        ("hellaswag", "validation", json.dumps({**GOOD["hellaswag"], "endings": "abc"}), "field 'endings' is str"),
        ("winogrande", "validation", json.dumps({**GOOD["winogrande"], "answer": "3"}), "expected '1' or '2'"),
    ],
)
def test_bad_data_is_one_line_naming_file_and_line(tmp_path, task, split, bad, message):
    data = _write(tmp_path, task, split, [json.dumps(GOOD[task]), bad])
    with pytest.raises(DataError) as ei:
        data.load(get_task(task), split)
    msg = str(ei.value)
    assert "\n" not in msg and message in msg and str(tmp_path) in msg


def test_blank_lines_are_skipped_and_empty_files_refused(tmp_path):
    data = _write(tmp_path, "piqa", "validation", [json.dumps(GOOD["piqa"]), "", json.dumps(GOOD["piqa"])])
    assert [d.index for d in data.load(get_task("piqa"), "validation")] == [0, 1]
    assert [n for n, _ in read_jsonl(data.path("piqa", "validation"))] == [1, 3]
    _write(tmp_path, "piqa", "train", [])
    with pytest.raises(DataError, match="no documents"):
        data.load(get_task("piqa"), "train")


def test_unknown_task_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match="unknown task 'mmlu'"):
        get_task("mmlu")
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "validation.jsonl").write_bytes(json.dumps(GOOD["piqa"]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match="validation.jsonl:2: not UTF-8"):
        TaskData(tmp_path).load(get_task("piqa"), "validation")


def test_doc_is_plain_data():
    t, d = _docs("piqa")
    first = (FIXTURES / "piqa" / "validation.jsonl").read_text().splitlines()[0]
    assert isinstance(d[0], Doc) and d[0].raw == json.loads(first)
