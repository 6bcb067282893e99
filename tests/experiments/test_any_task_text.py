"""Example d: ambiguous token-pattern sequences and a tiny HF BERT (dict in, ModelOutput out) trained through
`mheads.fit`, members independent or sharing one BERT trunk; the per-part metrics' and win shares' known
answers; the sweep's merge of a rerun into a committed table; a smoke sweep's tables, appended to."""

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


def test_the_trunk_is_tiny_berts_bert_and_its_pooler_output_what_the_classifier_reads():
    torch.manual_seed(0)
    full = text.tiny_bert(16)
    torch.manual_seed(0)
    trunk = text.bert_trunk(16)
    weights = trunk.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in full.model.bert.state_dict().items())
    assert set(weights) == set(full.model.bert.state_dict())
    data = text.make(8, 0)
    batch = {"input_ids": data.ids, "attention_mask": data.mask}
    pooled = trunk(batch).pooler_output  # (B, hidden)
    assert torch.allclose(full.model.classifier(pooled), full(batch).logits, atol=1e-6)


def test_wins_known_answer():
    labels = torch.tensor([0, 1, 1, 1])
    logits = torch.zeros(3, 4, 2)  # member m puts logit m + 1 on class 1 of example 1..3, 0 elsewhere
    for m in range(3):
        logits[m, 1:, 1] = m + 1.0
    logits[1, 0, 0] = 2.0  # member 1 fits example 0 best
    assert train_text.wins(logits, labels) == {"test_win_1": 0.75, "test_win_2": 0.25, "test_win_3": 0.0}


def _row(cell, metric, value, wall=1.0):
    return {"cell": cell, "seed": "0", "metric": metric, "value": value, "wall_time_s": wall}


def test_merge_keeps_the_held_rows_adds_the_new_and_refuses_a_different_rerun():
    old = [_row("a", "acc", "80.5", 9.0), _row("a", "nll", "nan", 9.0)]
    rerun = [_row("a", "acc", 80.5), _row("a", "nll", float("nan")), _row("a", "test_win_1", 0.5)]
    merged = sweep_text.merge(old, rerun + [_row("shared_a", "acc", 70.0)])
    assert merged == old + [_row("a", "test_win_1", 0.5), _row("shared_a", "acc", 70.0)]  # old wall times
    with pytest.raises(
        ValueError, match="cell a, seed 0, metric acc: the rerun gives 80.25, .*expected equal"
    ):
        sweep_text.merge(old, [_row("a", "acc", 80.25)])


METRICS = {"ensemble_acc", "oracle_acc", "member_acc", "nll", "clear_ensemble_acc", "ambiguous_oracle_acc"}


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fit_trains_the_hf_members_and_a_smoke_sweep_writes_the_tables(tmp_path):
    metrics = train_text.run("mcl", "smoke", 0, out=str(tmp_path / "run"))
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert set(metrics) == METRICS | {"test_win_1", "test_win_2", "params_k"}  # smoke: 2 members
    assert metrics["member_acc"] <= metrics["oracle_acc"] <= 100.0
    out = ["--scale", "smoke", "--seeds", "0", "--out", str(tmp_path / "sweep")]
    sweep_text.main(out + ["--cells", "independent", "rwta"])
    rows = _read(tmp_path / "sweep" / "results.csv")
    assert {(r["cell"], r["metric"]) for r in rows} == {
        (c, m) for c in ("independent", "rwta") for m in metrics
    }
    held = (tmp_path / "sweep" / "seeds.csv").read_text()
    sweep_text.main(out + ["--cells", "independent", "shared_mcl", "--append"])  # a rerun equals the table
    seeds = (tmp_path / "sweep" / "seeds.csv").read_text()
    assert seeds.startswith(held) and seeds.count("\n") == held.count("\n") + len(metrics)
    results = _read(tmp_path / "sweep" / "results.csv")
    params = {r["cell"]: round(1000 * float(r["mean"])) for r in results if r["metric"] == "params_k"}
    hidden, n = train_text.SCALES["smoke"]["hidden"], 2  # the trunk once, then a Linear(hidden, 4) per member
    trunk = params["shared_mcl"] - n * (hidden + 1) * 4
    assert params["independent"] == n * (trunk + (hidden + 1) * 4)
