"""The ``mheads`` command line: thin parsing around the library.

Exit codes: 0 success; 2 bad input (config, data, paths, checkpoints: a one-line message, no traceback unless
``--debug``); 3 a numerical fault stopped training; 4 a distributed peer failed; 75 preempted by SIGTERM after
writing a checkpoint (continue with ``--resume``), or stopped by SIGTERM while starting; 130 interrupted
(KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from mheads.cli.parser import build_parser
from mheads.core.notes import once_per_command
from mheads.train.preempt import PREEMPTED_EXIT_CODE  # light: no torch before a command needs it

EXIT_BAD_INPUT, EXIT_NUMERICAL, EXIT_DIST = 2, 3, 4


def _user_errors() -> tuple[type[BaseException], ...]:
    from mheads.config import ConfigError
    from mheads.core.atomic import OutputError
    from mheads.data import DataError
    from mheads.runs.checkpoint import CheckpointError
    from mheads.runs.folder import RunExistsError

    errors: tuple[type[BaseException], ...] = (
        ConfigError,
        DataError,
        CheckpointError,
        RunExistsError,
        OutputError,
        UsageError,
    )
    # a bad placement is bad input too (dist is imported only under torchrun)
    if "mheads.dist" in sys.modules:
        errors += (sys.modules["mheads.dist"].PlacementError,)
    return errors


class UsageError(ValueError):
    """A bad command-line combination."""


def _cmd_train(args) -> int:
    from mheads.config import load_config
    from mheads.train.loop import fit

    out, config = _train_folder(args)
    overrides = _train_overrides(args)
    cfg = load_config(config, overrides)
    if args.resume and args.config is None:
        _check_folder_model(cfg, overrides, out)
    resume, overwrite = _resume_or_overwrite(args, out)
    comm, wrap = _distributed(cfg)
    try:
        metrics = fit(
            cfg,
            out,
            resume=resume,
            overwrite=overwrite,
            comm=comm,
            wrap=wrap,
            progress=False if args.no_progress else None,
        )
    finally:
        if comm is not None:
            comm.destroy()
    if metrics is not None:
        _print_run(cfg, metrics, out)
    return 0


def _train_folder(args) -> tuple[Path, str | Path]:
    """The run folder and the config file of ``mheads train``: the resumed folder and its own config.yaml
    (unless --config), or --out and --config of a new run."""
    if args.resume:
        out = Path(args.resume)
        if args.out and Path(args.out) != out:
            raise UsageError(f"--out {args.out}: differs from --resume {args.resume}; give one folder")
        config = args.config or out / "config.yaml"
        if not Path(config).exists():
            raise UsageError(
                f"--resume {out}: no config.yaml there; is it a run folder written by `mheads train`?"
            )
        return out, config
    if not args.config:
        raise UsageError("--config: missing; give a YAML config (see experiments/ for examples)")
    if not args.out:
        raise UsageError("--out: missing; give a folder for the run's outputs")
    out, config = Path(args.out), args.config
    inside = Path(config).resolve().parent == out.resolve()
    if args.overwrite and inside and Path(config).name in _cleared():
        raise UsageError(
            f"--config {config}: is inside --out {out}, which --overwrite clears; copy it elsewhere first"
        )
    return out, config


def _train_overrides(args) -> list[str]:
    """The --set overrides, then --model (a resumed run's import-path model) as ``model.name``."""
    overrides = list(args.set)
    if args.model:
        if not args.resume:
            raise UsageError(
                "--model: only with --resume (a new run names its model in its config's model.name)"
            )
        overrides.append(f"model.name={json.dumps(args.model)}")
    return overrides


def _resume_or_overwrite(args, out: Path) -> tuple[bool, bool]:
    """Whether to resume ``out`` and whether to clear it: as asked, unless torchrun restarted this command."""
    from mheads.runs.folder import restarted_here

    if not args.resume and restarted_here(out):
        # torchrun --max-restarts started this command again after a failure: continue the run it began
        # (from its newest committed checkpoint, or from the start if it committed none), never clear it
        print(
            f"mheads: restart {os.environ['TORCHELASTIC_RESTART_COUNT']} under torchrun: resuming {out}",
            file=sys.stderr,
        )
        return True, False
    return bool(args.resume), args.overwrite


def _print_run(cfg, metrics: dict, out: Path) -> None:
    """The finished run's summary: the classification table, or any other task's metrics as JSON; then where
    the run is and the command that draws its plots (training writes none)."""
    from mheads.report.tables import format_run_summary

    if "member_acc" in metrics:
        print(format_run_summary(cfg.name, metrics))
    else:  # any task but classification: its metrics (docs/tasks.md)
        print(json.dumps({k: v for k, v in metrics.items() if k != "param_counts"}))
    print(f"run written to {out}; draw its plots with: mheads plot {shlex.quote(str(out))}")


def _check_folder_model(cfg, overrides: list[str], out: Path) -> None:
    """A resumed run's config.yaml comes from its folder, which never names code to import: a model given by
    import path must be named again on the command line (``--model``) before anything imports it; nor where
    to write outside it: a ``data.cache_dir`` must be named again (``--set data.cache_dir=...``)."""
    from mheads.train.reopen import needs_user_model

    named = {o.split("=", 1)[0].strip() for o in overrides}
    if needs_user_model(cfg.model.name) and "model.name" not in named:
        raise UsageError(
            f"--resume {out}: this run's model is {cfg.model.name!r}, named by its config.yaml; "
            "a run folder never names code to import, so name the model yourself: --model "
            "package.module:function (or --config with your own config)"
        )
    if cfg.data.cache_dir is not None and "data.cache_dir" not in named:
        # the decoded data would be written there: a handed-over folder could name any folder of the user's
        raise UsageError(
            f"--resume {out}: its config.yaml names data.cache_dir {cfg.data.cache_dir!r}, where the decoded "
            "data is written; a run folder never names where to write outside itself, so name it yourself: "
            f"--set {shlex.quote(f'data.cache_dir={cfg.data.cache_dir}')} (or --set data.cache_dir=null for "
            "the default cache)"
        )


def _cleared() -> tuple[str, ...]:
    from mheads.runs.folder import CLEARED_BY_OVERWRITE

    return CLEARED_BY_OVERWRITE


def _distributed(cfg):
    """Under torchrun (WORLD_SIZE > 1) the run is model-parallel across the ranks; otherwise
    single-process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, None
    from mheads.dist import setup_from_config

    return setup_from_config(cfg)


def _cmd_eval(args) -> int:
    from mheads.infer.evaluate import evaluate_run
    from mheads.infer.predict_task import is_tensor_run
    from mheads.report.tables import format_run_summary

    if is_tensor_run(args.run):  # a run on inputs of any shape: the task's report (docs/tasks.md)
        if args.ood:
            raise UsageError("--ood: out-of-distribution sets are scored for image classification runs only")
        from mheads.report.task_report import task_eval_text

        print(task_eval_text(args.run, args.data, args.split, not args.no_figures, args.model))
        return 0

    if args.split == "test":
        from mheads.report.evaluation import format_report, report_run

        report = report_run(
            args.run, data=args.data, ood=args.ood, figures=not args.no_figures, model=args.model
        )
        metrics = report["metrics"]
        print(format_run_summary(f"{args.run} ({args.split})", metrics))
        print(format_report("uncertainty", report))
        print(
            f"report: {report['report_file']}"
            + (f"; figures: {Path(args.run) / 'plots'}" if not args.no_figures else "")
        )
    else:
        if args.ood:
            raise UsageError(
                "--ood: out-of-distribution sets are scored against the test split; drop --split train"
            )
        metrics = evaluate_run(args.run, data=args.data, split=args.split, model=args.model)
        print(format_run_summary(f"{args.run} ({args.split})", metrics))
    print(
        json.dumps({k: metrics[k] for k in ("ensemble_mean_acc", "oracle_acc", "member_acc", "nll", "ece")})
    )
    return 0


@contextlib.contextmanager
def _no_oracle_lines() -> Iterator[None]:
    """predict's "no oracle in the records" warnings (``leave_out``) as one ``mheads: ...`` line each on
    stderr, every time and when raised; any other warning is shown as Python would."""
    from mheads.infer.predict_oracle import NO_ORACLE

    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=NO_ORACLE, category=UserWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, UserWarning) and str(message).startswith(NO_ORACLE):
                print(f"mheads: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _cmd_predict(args) -> int:
    from mheads.infer.predict import predict
    from mheads.infer.predict_format import failed, format_predictions

    if args.top < 1:
        raise UsageError(f"--top: got {args.top}; expected an integer >= 1")
    from mheads.infer.predict_files import read_input_files
    from mheads.infer.predict_task import is_tensor_run, predict_inputs

    with _no_oracle_lines():
        if is_tensor_run(args.run):  # table rows, .npz arrays or images of a run on inputs of any shape
            batch, keys = read_input_files(args.run, args.paths)
            records = predict_inputs(args.run, batch, model=args.model, top=args.top, keys=keys)
        else:
            records = predict(args.run, args.paths, top=args.top, model=args.model)
    text = format_predictions(records, args.format)
    if args.output:
        from mheads.core.atomic import atomic_write_text

        atomic_write_text(Path(args.output), text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    if any("ood" in r and r["ood"] is None for r in records):
        print(
            "mheads: no OOD flag: the run has no threshold for it (it is fitted on a held-out split: train "
            "with data.val_fraction > 0)",
            file=sys.stderr,
        )
    bad = failed(records)
    if bad:
        print(
            f"mheads: error: {len(bad)} of {len(records)} images could not be read (their records say "
            "why); the others were predicted",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return 0


def _cmd_shard(args) -> int:
    from mheads.data.shards import write_shards

    if args.per_shard < 1:
        raise UsageError(f"--per-shard: got {args.per_shard}; expected an integer >= 1")
    paths = write_shards(args.source, args.out, args.per_shard)
    print(f"wrote {len(paths)} shards to {args.out}")
    return 0


def _cmd_list_models(args) -> int:
    from mheads.models import create_model, list_models, model_info, parameterized_layers

    for name in list_models():
        info = model_info(name)
        net = create_model(name, image_size=info.min_image_size, **info.small_options)  # same layers, cheap
        print(
            f"{name:14s} images {info.default_image_size}px (min {info.min_image_size}); "
            f"split points: {', '.join(parameterized_layers(net))}"
        )
    return 0


def _cmd_plot(args) -> int:
    from mheads.cli.plot import plot_run

    return plot_run(Path(args.run))


def _cmd_demo(args) -> int:
    from mheads.cli.demo import run_demo

    run_demo(Path(args.out), recipe=args.config, overrides=args.set)
    return 0


def _cmd_reproduce(args) -> int:
    from mheads.reproduce import reproduce

    if args.seeds < 1:
        raise UsageError(f"--seeds: got {args.seeds}; expected an integer >= 1")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed: got {args.first_seed}; expected an integer >= 0")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: is a file; expected a folder for the sweep")
    print(
        reproduce(
            args.name,
            args.scale,
            args.data,
            args.out,
            seeds=args.seeds,
            overrides=args.set,
            first_seed=args.first_seed,
            reuse=not args.no_reuse,
            cells=[c.strip() for c in args.cells.split(",") if c.strip()] if args.cells else None,
            pool_with=args.pool_with,
        )
    )
    return 0


COMMANDS = {
    "reproduce": _cmd_reproduce,
    "train": _cmd_train,
    "eval": _cmd_eval,
    "list-models": _cmd_list_models,
    "plot": _cmd_plot,
    "demo": _cmd_demo,
    "shard": _cmd_shard,
    "predict": _cmd_predict,
}


def _early_sigterm(signum, frame) -> None:
    """SIGTERM outside a training loop (starting up, loading data, between a sweep's runs): stop at once. An
    exception raised here could land inside an import and leave a half-imported module behind, so the process
    ends as a kill would, which every writer already survives (atomic files, committed checkpoints)."""
    os.write(
        2,
        b"mheads: stopped by SIGTERM outside a training loop: nothing new to resume; run the command "
        b"again to continue\n",
    )
    os._exit(PREEMPTED_EXIT_CODE)


def main(argv: list[str] | None = None) -> int:
    # First of all: a SIGTERM while starting up ends with a clear line and exit 75, not a bare exit 143. A
    # training loop replaces this handler with its own (a checkpoint, then exit 75) while it runs.
    try:
        previous = signal.signal(signal.SIGTERM, _early_sigterm)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        previous = None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with once_per_command():  # a note repeated by every run of the command (demo cells) is said once
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("mheads: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`mheads list-models | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush fails quietly too
        return 0
    except Exception as err:
        if args.debug:
            raise
        code, prefix = _exit_code(err)
        if code is None:
            raise
        print(f"mheads: {prefix}{err}", file=sys.stderr)
        if code == EXIT_DIST:
            _exit_now(code)
        return code


def _exit_now(code: int) -> None:
    """End a rank that lost another: its process group is left broken (tearing it down may block), and at
    interpreter exit its destructor would find gloo's threads still waiting on the lost rank and abort the
    process (SIGABRT, "terminate called without an active exception") instead of exiting with ``code``. Every
    file a run writes is committed atomically, so nothing is lost by skipping the destructors."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(err: Exception) -> tuple[int | None, str]:
    """The exit code an error ends the command with (None: a bug, shown with its traceback)."""
    from mheads.ensemble.metrics import NonFiniteOutputs
    from mheads.train.numerics import NumericalFault
    from mheads.train.preempt import Preempted

    if isinstance(err, Preempted):
        return PREEMPTED_EXIT_CODE, ""
    if isinstance(err, (NumericalFault, NonFiniteOutputs)):
        return EXIT_NUMERICAL, "error: "
    if isinstance(err, _user_errors()):
        return EXIT_BAD_INPUT, "error: "
    dist = sys.modules.get("mheads.dist")  # imported only under torchrun: its failures can arise only then
    if dist is not None and isinstance(err, dist.DistributedFailure):
        return EXIT_DIST, "error: "
    return None, ""
