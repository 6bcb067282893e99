"""Example d: ambiguous token-pattern sequences and a tiny HF BERT (dict in, ModelOutput out) trained through
`mheads.fit`; the per-part metrics' known answers; a smoke sweep's tables."""

import csv

import pytest
import torch

pytest.importorskip("transformers")

from mheads.experiments.any_task import sweep_text, text, train_text  # noqa: E402


def _has(row, pattern):
    return any(row[i : i + 2].tolist() == list(pattern) for i in range(len(row) - 1))


def test_sequences_labels_follow_the_patterns_and_the_ambiguous_third_is_a_coin():
    data = text.make(600, 0)
    batch, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=600)))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (600, 12) and labels.shape == (600,)
    clear = torch.tensor([_has(r, text.CLEAR) for r in ids])
    ambiguous = torch.tensor([_has(r, text.AMBIGUOUS) for r in ids])
    assert not bool((clear & ambiguous).any())
    assert torch.equal(labels == 1, clear) and torch.equal(labels >= 2, ambiguous)
    counts = torch.bincount(labels, minlength=4).tolist()
    assert all(150 <= c <= 250 for c in counts[:2]) and all(60 <= c <= 140 for c in counts[2:])  # 1/3, 1/6
    assert bool(((ids == 0) == (mask == 0)).all()) and bool((mask.sum(1) >= 6).all())
    assert torch.equal(text.make(600, 0).labels, labels) and not torch.equal(text.make(600, 1).labels, labels)
    torch.manual_seed(0)
    out = text.tiny_bert()(batch)  # dict in
    assert out.logits.shape == (600, text.CLASSES)  # ModelOutput out


def test_parts_known_answer():
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.full((2, 4, 4), -5.0)  # member 0 answers 0, 0, 2, 2; member 1 answers 0, 0, 1, 2
    for m, answers in enumerate(((0, 0, 2, 2), (0, 0, 1, 2))):
        for b, c in enumerate(answers):
            logits[m, b, c] = 5.0
    p = train_text.parts(logits, labels)
    assert p["clear_ensemble_acc"] == 50.0  # sequence 1 (label 1) is answered 0
    assert p["ambiguous_oracle_acc"] == 50.0  # sequence 2 is member 0's answer, no member answers 3


def test_fit_trains_the_hf_members_and_a_smoke_sweep_writes_the_tables(tmp_path):
    metrics = train_text.run("mcl", "smoke", 0, out=str(tmp_path / "run"))
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert set(metrics) == {
        "ensemble_acc",
        "oracle_acc",
        "member_acc",
        "nll",
        "clear_ensemble_acc",
        "ambiguous_oracle_acc",
    }
    assert metrics["member_acc"] <= metrics["oracle_acc"] <= 100.0
    sweep_text.main(
        [
            "--scale",
            "smoke",
            "--seeds",
            "0",
            "--cells",
            "independent",
            "rwta",
            "--out",
            str(tmp_path / "sweep"),
        ]
    )
    with open(tmp_path / "sweep" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["cell"], r["metric"]) for r in rows} == {
        (c, m) for c in ("independent", "rwta") for m in metrics
    }
