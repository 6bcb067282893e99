"""A Hugging Face sequence classifier on synthetic token sequences, some ambiguous (issue 32, example d).

Data (`make(n, seed)`): sequences of 6..`length` token ids from a vocabulary of `VOCAB` (0 is padding), right-
padded, with an attention mask, in three equal kinds: no pattern (class 0); token 3 directly followed by token
5 (`CLEAR`, class 1); token 7 directly followed by token 9 (`AMBIGUOUS`), labelled 2 or 3 by a fair coin drawn
per sequence. The pattern tokens 3 and 7 never occur by chance, so the kind is a function of the input and the
ambiguous third is the only noise: one model is right on at most 1/3 + 1/3 + 1/6 = 5/6 of the sequences
(`BAYES_ACC`), while an oracle of members that answer 2 and 3 there can be right on all of them. Items are
`({"input_ids": (T,), "attention_mask": (T,)}, label)`, so a DataLoader's default collation (and `mheads.fit`)
gives the dict of `(B, T)` tensors a HF model takes.

Model (`tiny_bert()`): a `BertForSequenceClassification` built from a `BertConfig` (nothing downloaded; needs
`transformers`), wrapped by `DictInput` so that `model(batch)` calls `bert(**batch)`; it returns a
`ModelOutput` whose `.logits` are `(B, CLASSES)`; `model.output: logits` (fit) picks them. `bert_trunk()` is
the same BERT without its classifier (a `BertModel`, pooler included), the trunk the members share under
`fit`'s task heads.
"""

from __future__ import annotations

import torch
from torch import nn

from mheads.core.checks import check_int

VOCAB = 16
CLASSES = 4
CLEAR = (3, 5)  # -> class 1
AMBIGUOUS = (7, 9)  # -> class 2 or 3, a coin per sequence
BAYES_ACC = 5 / 6  # the best one model can do: right on the unambiguous 2/3, half of the ambiguous 1/3


class DictPairs(torch.utils.data.Dataset):
    """`({"input_ids": ids[i], "attention_mask": mask[i]}, labels[i])`."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.labels[i]


def make(n: int, seed: int, length: int = 12) -> DictPairs:
    """`n` sequences (see the module docstring), the same for the same seed."""
    check_int("n", n, 1)
    check_int("length", length, 6)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, length), generator=g)
    for first in (CLEAR[0], AMBIGUOUS[0]):  # no pattern by chance: planted below
        ids[ids == first] = first + 1
    lengths = torch.randint(6, length + 1, (n,), generator=g)
    kind = torch.randint(0, 3, (n,), generator=g)  # 0: none, 1: clear, 2: ambiguous
    coin = torch.randint(0, 2, (n,), generator=g)
    at = (torch.rand(n, generator=g) * (lengths - 1)).long()  # a start in 0..length-2
    for i in torch.nonzero(kind).flatten().tolist():
        ids[i, at[i] : at[i] + 2] = torch.tensor(CLEAR if kind[i] == 1 else AMBIGUOUS)
    labels = torch.where(kind == 2, 2 + coin, kind)
    mask = (torch.arange(length) < lengths.unsqueeze(1)).to(torch.int64)
    return DictPairs(ids * mask, mask, labels)


class DictInput(nn.Module):
    """`forward(batch)` = `model(**batch)`: a HF model taking the batch dict as one argument."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(**batch)


def bert_config(hidden: int = 32, layers: int = 1, length: int = 12):
    """The example's `BertConfig`: `layers` layers of width `hidden`, 2 attention heads, no dropout."""
    from transformers import BertConfig  # optional: only this example

    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=length,
        num_labels=CLASSES,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def tiny_bert(hidden: int = 32, layers: int = 1, length: int = 12) -> DictInput:
    """A freshly initialised (by torch's global RNG) `CLASSES`-way BERT; see the module docstring."""
    from transformers import BertForSequenceClassification

    return DictInput(BertForSequenceClassification(bert_config(hidden, layers, length)))


def bert_trunk(hidden: int = 32, layers: int = 1, length: int = 12) -> DictInput:
    """`tiny_bert` without its classifier: a `BertModel` of the same size, pooler included, whose
    `ModelOutput.pooler_output` `(B, hidden)` is what `BertForSequenceClassification` classifies (a shared
    trunk under `fit`'s task heads: `model.output: pooler_output`, a `Linear(hidden, CLASSES)` per member).
    Built from the same generator state it draws the same weights as `tiny_bert`'s `bert` (its parameters
    come first there)."""
    from transformers import BertModel

    return DictInput(BertModel(bert_config(hidden, layers, length), add_pooling_layer=True))
