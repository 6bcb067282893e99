"""The ``mheads`` command line's arguments: one function per command, in the order ``--help`` lists them.

Only argparse here: parsing a command line imports no torch (``mheads.cli.commands`` runs the commands).
"""

from __future__ import annotations

import argparse

_MODEL_HELP = (
    "the model of a run trained on an import path (package.module:function): a run folder never "
    "names code to import, so you name it (trusting that code)"
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``mheads`` command."""
    p = argparse.ArgumentParser(prog="mheads", description="Train diverse deep ensembles (TreeNets, MCL).")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)
    sub.add_parser("list-models", help="list the registered base networks and their split points")
    pl = sub.add_parser("plot", help="draw the oracle-assignment heatmap and training curves of a run")
    pl.add_argument("run", help="a run folder")
    _add_reproduce(sub)
    _add_shard(sub)
    _add_demo(sub)
    return p


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train an ensemble from a YAML config")
    t.add_argument("--config", help="YAML config (defaults to the run's own config.yaml with --resume)")
    t.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=0.01"
    )
    t.add_argument("--out", help="output folder for the run")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--model", metavar="IMPORT_PATH", help="with --resume: " + _MODEL_HELP)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="re-evaluate a run's saved members")
    e.add_argument("--run", required=True, help="a run folder written by `mheads train`")
    e.add_argument("--data", help="data to evaluate on (default: the run's own data source)")
    e.add_argument(
        "--split",
        default="test",
        choices=("train", "test"),
        help="the split to evaluate (default test; train: the metrics only, no report or figures)",
    )
    e.add_argument(
        "--ood",
        action="append",
        default=[],
        metavar="PATH",
        help="an out-of-distribution data set (its test split); repeatable. A run trained on "
        "data.classes also scores its other classes (open_set)",
    )
    e.add_argument("--no-figures", action="store_true", help="write no PNGs under <run>/plots/")
    e.add_argument("--model", metavar="IMPORT_PATH", help=_MODEL_HELP)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser(
        "predict",
        help="what a run's ensemble says about image files (or, for a run on "
        "inputs of any shape, table rows, .npz arrays or images)",
    )
    pr.add_argument("--run", required=True, help="a run folder written by `mheads train`")
    pr.add_argument(
        "paths",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files or folders of them (a run on inputs of any shape: table or .npz files, a record "
        "per row or example)",
    )
    pr.add_argument("--top", type=int, default=3, help="ensemble classes shown per image (default 3)")
    pr.add_argument(
        "--format",
        default="text",
        choices=("text", "json", "csv"),
        help="text (a line per input, the default), json (a list of records) or csv (a row per record, "
        "nested values as flat columns such as member0_class or members_0_mean_0)",
    )
    pr.add_argument("--output", help="write here instead of printing")
    pr.add_argument("--model", metavar="IMPORT_PATH", help=_MODEL_HELP)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "reproduce", help="rerun one of the paper's experiments and tabulate it next to the paper"
    )
    r.add_argument(
        "name",
        help="an experiment (table1 ... table6, table2-nin, table2-ilsvrc, mcl-ce, label-split, "
        "guided-backprop, bagging-control, open-set, resnet20; an unknown name lists them) or a spec .yaml",
    )
    r.add_argument(
        "--scale",
        default="smoke",
        choices=("smoke", "cpu", "paper"),
        help="smoke (seconds, the default), cpu (Caffe's quick recipe, batch 100) or paper (batch 350)",
    )
    r.add_argument("--data", help="data set path (default: the embedded Fashion-MNIST subset)")
    r.add_argument(
        "--out", required=True, help="sweep folder (rerunning it resumes, skipping finished cells)"
    )
    r.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ...)")
    r.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every cell")
    r.add_argument(
        "--cells", help="comma-separated cells to run (and those they start from), e.g. random_init"
    )
    r.add_argument(
        "--no-reuse",
        action="store_true",
        help="train every cell in full: no linking to a finished run with the same config in a "
        "sweep under the same parent folder, no continuing from another cell's shared "
        "pretraining",
    )
    r.add_argument(
        "--pool-with",
        metavar="SEEDS_CSV",
        action="append",
        help="an earlier sweep's seeds.csv (or its results folder): its runs of other seeds join "
        "the table's mean ± std, e.g. experiments/results/table1-cpu; repeat it to pool several "
        "(overrides of train.threads, train.device and other bookkeeping may differ)",
    )


def _add_shard(sub: argparse._SubParsersAction) -> None:
    sh = sub.add_parser(
        "shard",
        help="write an image folder (or a plain .tar of one) as WebDataset tar "
        "shards for streaming (data.loader: stream)",
    )
    sh.add_argument(
        "source", help="an image folder: train/<class>/*.jpg and test/<class>/... (or val/<class>/...)"
    )
    sh.add_argument("out", help="folder for train-000000.tar, ..., test-000000.tar, ... and classes.txt")
    sh.add_argument("--per-shard", type=int, default=10000, help="images per shard (default 10000)")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="the README's main job: a small real experiment on the embedded data")
    d.add_argument("--out", default="runs/demo", help="folder for the runs and figures (default runs/demo)")
    d.add_argument("--config", help="a spec file like experiments/demo.yaml (the default)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
