"""The Cerebras-GPT model card's published numbers, as data (what cgpt compares its own results with).

(The model card an export writes is :mod:`cgpt.export.model_card`.)

Source: the Cerebras-GPT model card (Hugging Face ``cerebras/Cerebras-GPT-*``; the same tables are
in the Cerebras Model Zoo ``modelzoo/transformers/pytorch/gpt3/configs/Cerebras_GPT/README.md``),
transcribed in ``shared/spec/cerebras-gpt-recipe.md`` sections 4.1, 4.2 and 5. Accuracies are
lm-evaluation-harness ``acc`` (not ``acc_norm``; the spec's section 1.4 of lm-eval-procedures.md
explains why), LAMBADA is ``lambada_openai`` acc, and the downstream average is the plain mean of
the seven tasks.

Two versions of the card disagree on some Pile test cross-entropies: the Hugging Face card (which
the project prefers, :data:`PILE_XENT_HF`) and the Model Zoo README copy, whose 0-shot table the
spec transcribes (:data:`PILE_XENT_ZOO`, the values in :data:`ZERO_SHOT`). Both are kept.

The card also gives two FLOPs columns that disagree (training table vs evaluation table; neither
is 6ND, see the spec's section 5): both are kept, and fits of the card's law use the evaluation
table's column (:data:`EVAL_FLOPS`), which is what reproduces the published coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "Cerebras-GPT model card (huggingface.co/cerebras/Cerebras-GPT-13B), via shared/spec/cerebras-gpt-recipe.md"

#: The seven downstream tasks in the card's column order, as lm-evaluation-harness names them.
TASKS = ("hellaswag", "piqa", "winogrande", "lambada_openai", "arc_easy", "arc_challenge", "openbookqa")
TASK_LABELS = {
    "hellaswag": "HellaSwag",
    "piqa": "PIQA",
    "winogrande": "WinoGrande",
    "lambada_openai": "LAMBADA",
    "arc_easy": "ARC-e",
    "arc_challenge": "ARC-c",
    "openbookqa": "OpenBookQA",
}

#: Family members in size order (SP has all seven, muP the first five).
SIZES = ("111m", "256m", "590m", "1.3b", "2.7b", "6.7b", "13b")
MUP_SIZES = SIZES[:5]

#: Training FLOPs, evaluation-table column (the 0-shot table's "FLOPs"), per size.
EVAL_FLOPS = {
    "111m": 2.6e18,
    "256m": 1.3e19,
    "590m": 6.1e19,
    "1.3b": 2.8e20,
    "2.7b": 1.1e21,
    "6.7b": 6.3e21,
    "13b": 2.3e22,
}
#: Training FLOPs, training-table column (disagrees with :data:`EVAL_FLOPS`; kept for reference).
TRAIN_TABLE_FLOPS = {
    "111m": 2.5e18,
    "256m": 1.1e19,
    "590m": 5.3e19,
    "1.3b": 2.5e20,
    "2.7b": 9.8e20,
    "6.7b": 5.9e21,
    "13b": 2.1e22,
}

#: Pile test cross-entropy (nats/token), Hugging Face card (preferred where the versions differ).
PILE_XENT_HF = {"111m": 2.566, "256m": 2.299, "590m": 2.184, "1.3b": 1.996, "2.7b": 1.834, "6.7b": 1.704, "13b": 1.575}
#: Pile test cross-entropy, Model Zoo README copy of the card (the 0-shot table's column).
PILE_XENT_ZOO = {"111m": 2.608, "256m": 2.349, "590m": 2.181, "1.3b": 1.997, "2.7b": 1.834, "6.7b": 1.704, "13b": 1.572}
#: muP Pile test cross-entropy (only one version exists).
PILE_XENT_MUP = {"111m": 2.588, "256m": 2.359, "590m": 2.155, "1.3b": 1.984, "2.7b": 1.846}

#: The paper's published SP law, L(f) = (f / F0) ** -B + C ([U] in the spec: quoted, not checked).
PAPER_LAW = {"f0": 5.984e22, "b": 0.0737, "c": 0.5066}


@dataclass(frozen=True)
class CardRow:
    """One model's row of the card: accuracies per task (``acc``) and their plain average."""

    size: str
    parameterization: str  # "sp" | "mup"
    shots: int
    acc: dict[str, float]
    average: float


def _rows(parameterization: str, shots: int, table: dict[str, tuple[float, ...]]) -> dict[str, CardRow]:
    out = {}
    for size, values in table.items():
        *accs, avg = values
        out[size] = CardRow(size, parameterization, shots, dict(zip(TASKS, accs)), avg)
    return out


# size: (HellaSwag, PIQA, WinoGrande, LAMBADA, ARC-e, ARC-c, OpenBookQA, average)
ZERO_SHOT = _rows(
    "sp",
    0,
    {
        "111m": (0.268, 0.594, 0.488, 0.194, 0.380, 0.166, 0.118, 0.315),
        "256m": (0.274, 0.613, 0.511, 0.293, 0.410, 0.170, 0.158, 0.347),
        "590m": (0.291, 0.627, 0.498, 0.366, 0.464, 0.190, 0.158, 0.370),
        "1.3b": (0.325, 0.664, 0.521, 0.462, 0.508, 0.224, 0.166, 0.410),
        "2.7b": (0.386, 0.701, 0.559, 0.567, 0.571, 0.246, 0.206, 0.462),
        "6.7b": (0.447, 0.739, 0.602, 0.636, 0.643, 0.282, 0.238, 0.512),
        "13b": (0.513, 0.766, 0.646, 0.696, 0.714, 0.367, 0.286, 0.570),
    },
)
FIVE_SHOT = _rows(
    "sp",
    5,
    {
        "111m": (0.267, 0.588, 0.475, 0.158, 0.356, 0.166, 0.136, 0.306),
        "256m": (0.278, 0.606, 0.522, 0.225, 0.422, 0.183, 0.164, 0.343),
        "590m": (0.291, 0.634, 0.479, 0.281, 0.475, 0.206, 0.152, 0.360),
        "1.3b": (0.326, 0.668, 0.536, 0.395, 0.529, 0.241, 0.174, 0.410),
        "2.7b": (0.382, 0.697, 0.543, 0.487, 0.590, 0.267, 0.224, 0.456),
        "6.7b": (0.444, 0.736, 0.590, 0.591, 0.667, 0.314, 0.270, 0.516),
        "13b": (0.514, 0.768, 0.674, 0.655, 0.743, 0.398, 0.318, 0.581),
    },
)
MUP_ZERO_SHOT = _rows(
    "mup",
    0,
    {
        "111m": (0.268, 0.598, 0.519, 0.204, 0.390, 0.176, 0.124, 0.325),
        "256m": (0.274, 0.617, 0.505, 0.287, 0.427, 0.194, 0.156, 0.351),
        "590m": (0.295, 0.644, 0.517, 0.362, 0.470, 0.194, 0.172, 0.379),
        "1.3b": (0.334, 0.682, 0.512, 0.471, 0.515, 0.223, 0.196, 0.419),
        "2.7b": (0.388, 0.697, 0.557, 0.558, 0.569, 0.241, 0.218, 0.461),
    },
)
MUP_FIVE_SHOT = _rows(
    "mup",
    5,
    {
        "111m": (0.268, 0.581, 0.520, 0.146, 0.368, 0.175, 0.124, 0.312),
        "256m": (0.278, 0.619, 0.534, 0.220, 0.415, 0.193, 0.154, 0.345),
        "590m": (0.298, 0.652, 0.515, 0.301, 0.479, 0.206, 0.174, 0.375),
        "1.3b": (0.329, 0.672, 0.513, 0.396, 0.531, 0.235, 0.212, 0.413),
        "2.7b": (0.382, 0.704, 0.560, 0.510, 0.595, 0.267, 0.210, 0.461),
    },
)


def card_row(size: str, *, mup: bool = False, shots: int = 0) -> CardRow:
    """The card's row for a size (``"111m"``...``"13b"``), SP or muP, 0 or 5 shots; KeyError if the card has none."""
    table = {(False, 0): ZERO_SHOT, (False, 5): FIVE_SHOT, (True, 0): MUP_ZERO_SHOT, (True, 5): MUP_FIVE_SHOT}[
        (mup, shots)
    ]
    return table[size]


def size_of_preset(preset: str) -> tuple[str, bool] | None:
    """``"cerebras-256m-mup"`` -> ``("256m", True)``; None for presets the card does not cover."""
    name = preset.removeprefix("cerebras-")
    if name == preset:
        return None
    mup = name.endswith("-mup")
    size = name.removesuffix("-mup")
    if size not in SIZES or (mup and size not in MUP_SIZES):
        return None
    return size, mup
