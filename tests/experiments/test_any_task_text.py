"""Example d: token-pattern sequences and a tiny HF BERT (dict in, ModelOutput out) as TreeNet members."""

import pytest
import torch

pytest.importorskip("transformers")

from mheads.experiments.any_task import text, train_text  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sequences_labels_and_the_hf_model():
    data = text.make(64, 0)
    batch, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=64)))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (64, 16) and labels.shape == (64,)
    has = [any(row[i:i + 2].tolist() == list(text.PATTERN) for i in range(15)) for row in ids]
    assert torch.tensor(has).long().tolist() == labels.tolist() and 0 < int(labels.sum()) < 64
    assert bool(((ids == 0) == (mask == 0)).all()) and bool((mask.sum(1) >= 6).all())
    torch.manual_seed(0)
    out = text.tiny_bert()(batch)  # dict in
    assert out.logits.shape == (64, 2)  # ModelOutput out


def test_the_treenet_of_hf_members(monkeypatch):
    net = train_text.model(2, 32, 0)
    x, _ = text.pack([text.make(4, 1)[i] for i in range(4)])
    assert x.shape == (4, 2, 16) and net(x).shape == (2, 4, 2)
    assert not torch.equal(net(x)[0], net(x)[1])  # members drawn from their own seeds
    monkeypatch.setitem(train_text.SCALES, "smoke", {**train_text.SCALES["smoke"], "steps": 2, "n": 16,
                                                     "test": 8})
    metrics = train_text.run("mcl", "smoke", 0)
    assert metrics["num_examples"] == 8 and len(metrics["member_acc"]) == 2
