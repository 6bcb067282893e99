"""A Hugging Face sequence classifier on synthetic token sequences (issue 32, example d).

Data (`make(n, seed)`): sequences of 6..`length` token ids from a vocabulary of `VOCAB` (0 is padding), right-
padded, with an attention mask; the label is 1 when the pattern `PATTERN` (token 3 directly followed by token
5) occurs, else 0 (about half of each, by construction). Items are `({"input_ids": (T,), "attention_mask":
(T,)}, label)`, so a DataLoader's default collation gives the dict of `(B, T)` tensors a HF model takes.

Model (`tiny_bert(seed)`): a 2-layer `BertForSequenceClassification` built from a `BertConfig` (nothing
downloaded; needs `transformers`), wrapped by `DictInput` so that `model(batch)` calls `bert(**batch)`; it
returns a `ModelOutput` whose `.logits` are `(B, 2)`. `TreeNet(..., output="logits")` picks them.
"""

from __future__ import annotations

import torch
from torch import nn

from mheads.core.checks import check_int

VOCAB = 16
PATTERN = (3, 5)


class DictPairs(torch.utils.data.Dataset):
    """`({"input_ids": ids[i], "attention_mask": mask[i]}, labels[i])`."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.labels[i]


def make(n: int, seed: int, length: int = 16) -> DictPairs:
    """`n` sequences (see the module docstring), the same for the same seed."""
    check_int("n", n, 1)
    check_int("length", length, 6)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, length), generator=g)
    ids[ids == PATTERN[0]] = PATTERN[0] + 1  # no pattern by chance: plant it below in half the sequences
    lengths = torch.randint(6, length + 1, (n,), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        if labels[i]:
            at = int(torch.randint(0, int(lengths[i]) - 1, (1,), generator=g))
            ids[i, at:at + 2] = torch.tensor(PATTERN)
    mask = (torch.arange(length) < lengths.unsqueeze(1)).to(torch.int64)
    return DictPairs(ids * mask, mask, labels)


class DictInput(nn.Module):
    """`forward(batch)` = `model(**batch)`: a HF model taking the batch dict as one argument."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(**batch)


class PackedInput(nn.Module):
    """`forward(x)` with `x: (B, 2, T)` int64 = `model(input_ids=x[:, 0], attention_mask=x[:, 1])`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model(input_ids=x[:, 0], attention_mask=x[:, 1])


def pack(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """A DataLoader `collate_fn`: `[(dict, label)]` -> ids and mask `(B, 2, T)` int64, labels `(B,)`."""
    return (torch.stack([torch.stack([d["input_ids"], d["attention_mask"]]) for d, _ in items]),
            torch.stack([y for _, y in items]))


def tiny_bert(hidden: int = 32, layers: int = 2, length: int = 16) -> DictInput:
    """A freshly initialised (by torch's global RNG) 2-class BERT; see the module docstring."""
    from transformers import BertConfig, BertForSequenceClassification  # optional: only this example

    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=length, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return DictInput(BertForSequenceClassification(config))
