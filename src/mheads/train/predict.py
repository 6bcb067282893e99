"""``mheads predict``: what a trained ensemble says about image files.

Per image, named by its path: the ensemble's top classes with their probabilities (the members' averaged
probabilities, after the run's temperature scaling when it has one), each member's top-1 class and
confidence, the uncertainty scores (total / aleatoric / epistemic entropy, member disagreement), and for an
ensemble trained with an assigning loss (MCL and its family) the members' proposals ranked by confidence: an
MCL member is a specialist, so its proposal matters when it is confident, not on average.

Images are decoded with Pillow and given the run's evaluation view (shorter side to ``data.eval_resize``,
centre crop to the model's image size; an image already that size is used as is) and its normalization.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import torch

from mheads.config import Config, ConfigError, load_config
from mheads.data import DataError, Normalizer
from mheads.data.imagefolder import IMAGE_SUFFIXES, natural_key
from mheads.data.transforms import decode, eval_view, to_tensor
from mheads.ensemble.losses import LOSSES
from mheads.ensemble.uncertainty import disagreement_score, entropy_decomposition
from mheads.runs.folder import load_calibration, load_normalizer
from mheads.train.build import tree_from_meta
from mheads.train.evaluate import load_run_weights, load_weights_checked
from mheads.train.reopen import ModelSpec

__all__ = ["format_predictions", "image_paths", "predict"]


def image_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """The image files among ``paths`` (folders are searched recursively, files in natural order)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                     and not any(part.startswith(".") for part in f.relative_to(p).parts)]
            found.extend(sorted(files, key=lambda f: natural_key(str(f))))
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; expected image files or folders of them")
    if not found:
        raise DataError(f"{' '.join(map(str, paths))}: no image files "
                        f"({'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))}) found")
    return found


def _normalizer(run: Path, cfg: Config, device: torch.device) -> Normalizer:
    saved = load_normalizer(run)
    if saved is not None:
        return saved.to(device)
    # a run from before normalizers were saved with it: refit on its training data, as `mheads eval` does
    from mheads.data.loader import prepare

    return prepare(cfg, device).normalizer


def predict(run: str | os.PathLike, paths: list[str | os.PathLike], *, top: int = 3,
            batch_size: int = 64, model: ModelSpec = None) -> list[dict]:
    """One record per image (see the module docstring)."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"--run {run}: no config.yaml; is it a run folder written by `mheads train`?")
    cfg = load_config(run / "config.yaml")
    weights, meta = load_run_weights(run)
    tree = tree_from_meta(meta, where=str(run / "run.json"), model=model)
    load_weights_checked(tree, weights, run)
    tree.eval()
    device = torch.device("cpu")
    normalizer = _normalizer(run, cfg, device)
    calibration = load_calibration(run)
    size, channels = meta["image_size"], meta["in_channels"]
    resize = cfg.data.eval_resize or size
    classes = _classes(run, meta)
    top = max(1, min(top, len(classes)))
    assigning = LOSSES[cfg.loss.name].assigns if cfg.loss.name in LOSSES else False
    files = image_paths(paths)
    records = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        x = torch.stack([to_tensor(eval_view(decode(f.read_bytes(), str(f), channels), size, resize))
                         for f in chunk])
        with torch.no_grad():
            logits = tree(normalizer(x)).float()  # (M, B, C)
        records.extend(_records(chunk, logits, classes, top, assigning, calibration))
    return records


def _classes(run: Path, meta: dict) -> list[str]:
    try:
        info = json.loads((run / "run.json").read_text())
        classes = info["data"]["classes"]
        if len(classes) == meta["num_classes"]:
            return [str(c) for c in classes]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return [str(i) for i in range(meta["num_classes"])]


def _records(files, logits: torch.Tensor, classes, top: int, assigning: bool, calibration: dict | None):
    t_ens = float(calibration["temperature"]) if calibration else 1.0
    t_mem = (torch.tensor(calibration["member_temperatures"], dtype=torch.float32).view(-1, 1, 1)
             if calibration else torch.ones(1, 1, 1))
    ensemble = torch.softmax(logits / t_ens, dim=-1).mean(dim=0)  # (B, C)
    members = torch.softmax(logits / t_mem, dim=-1)  # (M, B, C)
    total, aleatoric, epistemic = entropy_decomposition(logits / t_ens)
    disagreement = disagreement_score(logits)
    conf, pred = members.max(dim=-1)  # (M, B)
    out = []
    for i, f in enumerate(files):
        p, c = ensemble[i].topk(top)
        rec = {"path": str(f),
               "top": [{"class": classes[int(k)], "prob": round(float(v), 4)} for v, k in zip(p, c)],
               "members": [{"class": classes[int(pred[m, i])], "prob": round(float(conf[m, i]), 4)}
                           for m in range(logits.shape[0])],
               "entropy": round(float(total[i]), 4), "aleatoric": round(float(aleatoric[i]), 4),
               "epistemic": round(float(epistemic[i]), 4), "disagreement": round(float(disagreement[i]), 4)}
        if assigning:
            order = conf[:, i].argsort(descending=True, stable=True)
            rec["proposals"] = [{"member": int(m), "class": classes[int(pred[m, i])],
                                 "prob": round(float(conf[m, i]), 4)} for m in order]
        out.append(rec)
    return out


def format_predictions(records: list[dict], fmt: str = "text") -> str:
    """``text`` (one line per image), ``json`` (a list) or ``csv`` (one row per image)."""
    if fmt == "json":
        return json.dumps(records, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        members = len(records[0]["members"]) if records else 0
        tops = len(records[0]["top"]) if records else 0
        head = (["path"] + [f"top{k + 1}_{x}" for k in range(tops) for x in ("class", "prob")]
                + [f"member{m}_{x}" for m in range(members) for x in ("class", "prob")]
                + ["entropy", "aleatoric", "epistemic", "disagreement"])
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(head)
        for r in records:
            w.writerow([r["path"]] + [v for t in r["top"] for v in (t["class"], t["prob"])]
                       + [v for t in r["members"] for v in (t["class"], t["prob"])]
                       + [r["entropy"], r["aleatoric"], r["epistemic"], r["disagreement"]])
        return buf.getvalue().rstrip("\n")
    lines = []
    for r in records:
        top = ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r["top"])
        mem = ", ".join(f"{t['class']} {100 * t['prob']:.0f}%" for t in r["members"])
        line = (f"{r['path']}: {top} | members: {mem} | entropy {r['entropy']:.3f} "
                f"(aleatoric {r['aleatoric']:.3f}, epistemic {r['epistemic']:.3f}), "
                f"disagreement {r['disagreement']:.2f}")
        if "proposals" in r:
            line += " | proposals: " + ", ".join(f"{t['class']} ({100 * t['prob']:.0f}%, m{t['member']})"
                                                 for t in r["proposals"])
        lines.append(line)
    return "\n".join(lines)
