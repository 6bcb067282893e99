"""``mheads predict``: what a trained ensemble says about image files.

Per image, named by its path: the ensemble's top classes with their probabilities (the members' averaged
probabilities), each member's top-1 class and confidence, the uncertainty scores (total / aleatoric /
epistemic entropy, member disagreement), for an ensemble trained with an assigning loss (MCL and its family)
the members' proposals ranked by confidence (an MCL member is a specialist, so its proposal matters when it
is confident, not on average), and an OOD flag where the run has a threshold for it.

One temperature applies to every number of a record: the ensemble's (``calibration.json``'s ``temperature``,
fitted on the held-out split; 1 without one), so each member's probabilities are the very ones the ensemble
averages, and the member confidences, the proposals, the aleatoric entropy (their mean entropy) and the
total entropy never contradict each other. The per-member temperatures (each member calibrated alone) are
reported in ``calibration.json`` but not used here: mixing them with the ensemble's made a member look sure
while the aleatoric entropy said it was not.

The OOD flag (``ood``) compares the run's criterion (``calibration.json``'s ``ood_threshold``: ``max_prob``,
or ``max_member_prob`` for an assigning loss) on the same temperature-scaled logits with a threshold fitted
on the held-out split at training (the score below which 95% of those in-distribution images fall): ``true``
above it. A run without a held-out split has no threshold, and its records say ``"ood": null``.

An image that cannot be read or decoded gets a record with its ``error`` and no prediction; the others are
predicted as usual (``mheads predict`` then exits 2 after printing them all).

Images are decoded with Pillow and given the run's evaluation view (shorter side to ``data.eval_resize``,
centre crop to the model's image size; an image already that size is used as is) and its normalization.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mheads.config import Config, ConfigError, load_config
from mheads.data import DataError, Normalizer
from mheads.data.decode import read_image_file
from mheads.data.files import display
from mheads.data.imagefolder import IMAGE_SUFFIXES, natural_key
from mheads.data.transforms import decode, eval_view, to_tensor
from mheads.ensemble.calibration import apply_temperature
from mheads.ensemble.losses import LOSSES
from mheads.ensemble.uncertainty import CRITERIA, disagreement_score, entropy_decomposition
from mheads.infer.predict_format import format_predictions
from mheads.infer.predict_oracle import oracle_fields
from mheads.runs.entries import read_run_json
from mheads.runs.run_files import load_calibration, load_normalizer
from mheads.tasks import Classification
from mheads.train.build import tree_from_meta
from mheads.train.reopen import ModelSpec
from mheads.train.run_model import load_run_weights, load_weights_checked, run_meta

__all__ = [
    "OpenedRun",
    "format_predictions",
    "image_paths",
    "load_image",
    "open_run",
    "predict",
    "predict_images",
]


def image_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files among ``paths`` (folders are searched recursively, files in natural order)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # anything named like an image but a folder is listed, FIFOs and devices included: its read then
            # refuses it for that image alone (reported, never opened blocking), never skipped silently
            files = [
                f
                for f in p.rglob("*")
                if not f.is_dir()
                and f.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
            found.extend(sorted(files, key=lambda f: natural_key(str(f))))
        elif p.exists() or p.is_symlink():  # a file, or something its read will refuse by name
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; expected image files or folders of them")
    if not found:
        raise DataError(
            f"{' '.join(map(str, paths))}: no image files "
            f"({'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))}) found"
        )
    return found


def _normalizer(run: Path, cfg: Config, device: torch.device, meta: dict) -> Normalizer:
    saved = load_normalizer(run, meta["in_channels"], meta["image_size"])
    if saved is not None:
        return saved.to(device)
    # a run from before normalizers were saved with it: refit on its training data, as `mheads eval` does
    from mheads.data.loader import prepare

    return prepare(cfg, device).normalizer


@dataclass
class OpenedRun:
    """What prediction needs of a run folder, read once."""

    tree: torch.nn.Module  # in eval mode (on the CPU, unless the caller's)
    normalizer: Normalizer
    calibration: dict | None
    classes: list[str]
    assigning: bool
    channels: int
    size: int
    resize: int


def open_run(
    run: str | os.PathLike, model: ModelSpec = None, tree: torch.nn.Module | None = None
) -> OpenedRun:
    """A run folder's model, normalization, calibration and class names, for :func:`predict` and
    :func:`predict_images`; ``tree``: the run's trained TreeNet already in memory (``mheads.fit``'s), used
    instead of rebuilding it."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"--run {run}: no config.yaml; is it a run folder written by `mheads train`?")
    cfg = load_config(run / "config.yaml")
    if tree is None:
        weights, meta = load_run_weights(run)
        tree = tree_from_meta(meta, where=str(run / "run.json"), model=model)
        load_weights_checked(tree, weights, run)
    else:
        meta = run_meta(run)
    tree.eval()
    size = meta["image_size"]
    return OpenedRun(
        tree,
        _normalizer(run, cfg, torch.device("cpu"), meta),
        load_calibration(run, meta["members"]),
        _classes(run, meta),
        LOSSES[cfg.loss.name].assigns if cfg.loss.name in LOSSES else False,
        meta["in_channels"],
        size,
        cfg.data.eval_resize or size,
    )


def predict(
    run: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    top: int = 3,
    batch_size: int = 64,
    model: ModelSpec = None,
    tree: torch.nn.Module | None = None,
) -> list[dict]:
    """One record per image (see the module docstring); ``tree``: as :func:`open_run` takes it."""
    opened = open_run(run, model, tree)
    files = image_paths(paths)
    records = []
    for start in range(0, len(files), batch_size):
        chunk, images = [], []
        for f in files[start : start + batch_size]:
            try:
                images.append(load_image(f, opened.channels, opened.size, opened.resize))
                chunk.append(f)
            except (DataError, OSError) as err:  # this image only: report it and go on with the others
                records.append({"path": display(f), "error": str(err)})
        if images:
            records.extend(
                _predicted(opened, torch.stack(images), [("path", display(f)) for f in chunk], top)
            )
    order = {display(f): i for i, f in enumerate(files)}
    return sorted(records, key=lambda r: order[r["path"]])  # the files' order, errors in their place


def predict_images(
    opened: OpenedRun,
    images: torch.Tensor,
    *,
    top: int = 3,
    batch_size: int = 64,
    first: int = 0,
    targets: torch.Tensor | None = None,
) -> list[dict]:
    """One record per image of ``images``: ``(N, C, H, W)`` uint8 at the run's image size and channels (as
    decoded and cropped for the model); each record names its ``index`` (``first`` + its row) instead of a
    path. With ``targets`` ``(N,)`` (class indices) each record also names its ``target`` and ``oracle``
    (:mod:`mheads.infer.predict_oracle`); targets that are not the run's classes raise ``UnfitTargets``."""
    want = (opened.channels, opened.size, opened.size)
    if images.ndim != 4 or tuple(images.shape[1:]) != want or images.dtype != torch.uint8:
        raise DataError(
            f"inputs: got {images.dtype} images of shape {tuple(images.shape)}; expected uint8 "
            f"(N, {', '.join(map(str, want))}), the run's channels and image size"
        )
    records = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        keys = [("index", first + start + i) for i in range(len(chunk))]
        labels = None if targets is None else targets[start : start + batch_size]
        records.extend(_predicted(opened, chunk, keys, top, labels))
    return records


def _predicted(
    opened: OpenedRun,
    images: torch.Tensor,
    keys: Sequence[tuple[str, object]],
    top: int,
    targets: torch.Tensor | None = None,
):
    device = next(opened.tree.parameters()).device
    with torch.no_grad():
        logits = opened.tree(opened.normalizer(images.to(device))).float().cpu()  # (M, B, C)
    top = max(1, min(top, len(opened.classes)))
    records = _records(keys, logits, opened.classes, top, opened.assigning, opened.calibration)
    if targets is None:
        return records
    found = oracle_fields(Classification(), logits, targets, opened.classes, list(keys))  # the first right
    return [record | extra for record, extra in zip(records, found, strict=True)]


def load_image(path: Path, channels: int, size: int, resize: int) -> torch.Tensor:
    """The image file at ``path`` as the run's model sees it, ``(channels, size, size)`` uint8: read
    (bounded), decoded to ``channels`` (Pillow converts colour and greyscale), shorter side to ``resize``,
    centre crop. Raises ``DataError`` naming the file."""
    return to_tensor(eval_view(decode(read_image_file(path), str(path), channels), size, resize))


def _classes(run: Path, meta: dict) -> list[str]:
    """The class names ``run.json`` records (``data.classes``), one string per class of the model; a run
    that records none is named by class numbers. A list of another length or of other than strings is one
    ``ConfigError`` naming the file and the field (it fell back to class numbers without a word)."""
    data = read_run_json(run).get("data", {})
    k = meta["num_classes"]
    if not isinstance(data, dict):
        raise ConfigError(f"{run / 'run.json'}: data is a {type(data).__name__}; expected a JSON object")
    value = data.get("classes")
    if value is None:
        return [str(i) for i in range(k)]
    if not isinstance(value, list):
        wrong = f"a {type(value).__name__}"
    elif len(value) != k:
        wrong = f"{len(value)} names"
    elif not all(isinstance(c, str) for c in value):
        wrong = "not all strings"
    else:
        return value
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ConfigError(
        f"{run / 'run.json'}: data.classes is {shown} ({wrong}); expected "
        f"a list of {k} class names (strings), one per class of the model (meta.num_classes {k})"
    )


def _records(keys, logits: torch.Tensor, classes, top: int, assigning: bool, calibration: dict | None):
    temperature = calibration["temperature"] if calibration else 1.0
    scaled = apply_temperature(logits, temperature)  # the one temperature of every number below
    members = torch.softmax(scaled, dim=-1)  # (M, B, C)
    ensemble = members.mean(dim=0)  # (B, C)
    total, aleatoric, epistemic = entropy_decomposition(scaled)
    disagreement = disagreement_score(logits)
    conf, pred = members.max(dim=-1)  # (M, B)
    flag = calibration.get("ood_threshold") if calibration else None
    ood_scores = CRITERIA[flag["criterion"]](scaled) if flag else None  # (B,), higher = more OOD
    out = []
    for i, (key, value) in enumerate(keys):  # ("path", the file shown) or ("index", the row)
        p, c = ensemble[i].topk(top)
        rec = {
            key: value,
            "temperature": temperature,
            "top": [{"class": classes[int(k)], "prob": round(float(v), 4)} for v, k in zip(p, c)],
            "members": [
                {"class": classes[int(pred[m, i])], "prob": round(float(conf[m, i]), 4)}
                for m in range(logits.shape[0])
            ],
            "entropy": round(float(total[i]), 4),
            "aleatoric": round(float(aleatoric[i]), 4),
            "epistemic": round(float(epistemic[i]), 4),
            "disagreement": round(float(disagreement[i]), 4),
            "ood": None,
        }
        if flag and ood_scores is not None:  # ood_scores: exactly when there is a flag
            score = float(ood_scores[i])
            rec["ood"] = {
                "flag": score > flag["threshold"],
                "score": round(score, 4),
                "criterion": flag["criterion"],
                "threshold": round(flag["threshold"], 4),
            }
        if assigning:
            order = conf[:, i].argsort(descending=True, stable=True)
            rec["proposals"] = [
                {"member": int(m), "class": classes[int(pred[m, i])], "prob": round(float(conf[m, i]), 4)}
                for m in order
            ]
        out.append(rec)
    return out
