"""Figures an experiment asks for (``figures:`` in its spec)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mheads.report.figures import accuracy_vs_sharing, finetune_curves, heatmap_grid
from mheads.runs.entries import read_run_file
from mheads.runs.folder import read_jsonl


def draw_figures(spec, out: Path, results: dict[str, list[dict]], seed: int = 0) -> list[Path]:
    """Draw ``spec``'s figures from the runs of one seed (the sweep's first, under ``out/seed-N``) into
    ``out``. Seed 0's figures take the plain names (``oracle_assignment.png``); another seed's carry its
    number (``oracle_assignment_seed2.png``), so a sweep that adds a seed never draws over an earlier seed's
    figure."""
    seed_dir = out / f"seed-{seed}"
    tag = "" if seed == 0 else f"_seed{seed}"
    written = []
    if "guided_backprop" in spec.figures:
        written.append(guided_backprop_figure(spec, seed_dir, out / f"guided_backprop{tag}.png"))
    if "accuracy_vs_sharing" in spec.figures:
        points = [(c.row, results[c.name][0]) for c in spec.cells if results.get(c.name)]
        if points:
            written.append(
                accuracy_vs_sharing(points, out / f"accuracy_vs_sharing{tag}.png", title=spec.title)
            )
    if "finetune_curves" in spec.figures:
        series = [
            (c.row, _start(seed_dir / c.init_from_cell) + read_jsonl(seed_dir / c.name / "eval.jsonl"))
            for c in spec.cells
            if c.init_from_cell is not None and (seed_dir / c.name / "eval.jsonl").is_file()
        ]
        series = [(label, history) for label, history in series if len(history) > 1]
        if series:
            written.append(finetune_curves(series, out / f"finetune_curves{tag}.png", title=spec.title))
    if "assignment_heatmaps" in spec.figures:
        panels = [
            (c.row, results[c.name][0]["oracle_assignment"])
            for c in spec.cells
            if results.get(c.name) and len(results[c.name][0]["member_acc"]) > 1
        ]
        if panels:
            classes = next(results[c.name][0]["classes"] for c in spec.cells if results.get(c.name))
            written.append(heatmap_grid(panels, classes, out / f"oracle_assignment{tag}.png"))
    return written


def _start(run: Path) -> list[dict]:
    """The point a fine-tuning curve starts from: the final test accuracies of the run it starts from, at
    iteration 0 (for identical members, one model copied M times: its accuracy is their oracle and mean)."""
    if not os.path.lexists(run / "metrics.json"):  # a dangling link is refused below
        return []
    m = read_run_file(run, "metrics.json")  # a link, a FIFO or not a JSON object: refused in one line
    return [{"step": 0, "oracle_acc": m["oracle_acc"], "ensemble_mean_acc": m["ensemble_mean_acc"]}]


def guided_backprop_figure(spec, seed_dir: Path, path: Path, num_images: int = 4) -> Path:
    """Rows: test images; columns: the image, then each member of every cell (Figure 2(e))."""
    from matplotlib.figure import Figure

    from mheads.data.resident import prepare_data
    from mheads.reproduce.guided_backprop import guided_saliency, to_image
    from mheads.train.build import tree_from_meta
    from mheads.train.run_model import load_run_weights

    columns = []  # (title, member network)
    for cell in spec.cells:
        weights, meta = load_run_weights(seed_dir / cell.name)
        tree = tree_from_meta(meta)
        tree.load_state_dict(weights)
        columns += [(f"{cell.row}\nmember {m}", tree.member(m)) for m in range(tree.num_members)]
    data = prepare_data(spec.cells[0].config, torch.device("cpu"))
    # test sets stored class by class would give one class
    picks = first_of_each_class(data.test_y, num_images)
    x, y = data.normalizer(data.test_x[picks]), data.test_y[picks]
    raw = data.test_x[picks].float() / 255.0
    num_images = len(picks)
    fig = Figure(figsize=(1.6 * (len(columns) + 1), 1.7 * num_images))
    axes = fig.subplots(num_images, len(columns) + 1, squeeze=False)
    grads = [guided_saliency(net, x.contiguous(), y) for _, net in columns]
    for i in range(num_images):
        axes[i][0].imshow(raw[i].permute(1, 2, 0).squeeze(-1), cmap="gray")
        axes[i][0].set_ylabel(data.classes[int(y[i])], fontsize=8)
        for j, (title, _) in enumerate(columns):
            img = to_image(grads[j][i])
            axes[i][j + 1].imshow(img.squeeze(-1), cmap="gray" if img.shape[-1] == 1 else None)
            if i == 0:
                axes[i][j + 1].set_title(title, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def first_of_each_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first test example of each of the first ``n`` classes present (in label order)."""
    classes = torch.unique(labels)[:n]
    return torch.stack([torch.nonzero(labels == c)[0, 0] for c in classes])
