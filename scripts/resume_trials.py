"""Kill a small training run with SIGKILL at random moments, resume it, and check it ends bit-identical.

Issue 6's exact-resume check at a larger count than the default test run (tests/test_resume.py runs 3 trials):
one uninterrupted ``python -m mheads train`` run is the reference; each trial trains the same config, sends
SIGKILL 1..--max-kills times (each at a uniformly random moment of the process's life, so kills land during
setup, training steps, checkpoint saves, the final evaluation and the final save), resumes with
``mheads train --resume`` after each, and compares the finished run with the reference: every weight file with
``torch.equal``, metrics.json (timings aside) and eval.jsonl.

    python scripts/resume_trials.py --trials 20
    python scripts/resume_trials.py --trials 10 --stream   # the streaming loader with 2 worker processes

Exit status 0 when every trial matches, 1 otherwise. Runs on the CPU; about a second per trial on an idle
machine after ~10 s of start-up (the trials share one process that imported torch, see tests/cli_harness.py).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the CLI harness the tests use

from cli_harness import (  # noqa: E402
    CliServer,
    kill_and_resume,
    run_differences,
    run_module,
    streamed_sections,
    write_config,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="number of kill-and-resume trials (default 20)")
    p.add_argument("--max-kills", type=int, default=3, help="SIGKILLs per trial: 1..this, drawn per trial")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--workdir", type=Path,
                   help="keep the run folders here (default: a temporary folder, removed)")
    p.add_argument("--stream", action="store_true",
                   help="stream a generated folder of varied-size JPEGs with 2 DataLoader workers "
                        "(data.loader: stream, random-resized crops) instead of the resident embedded data")
    args = p.parse_args(argv)
    if args.trials < 1 or args.max_kills < 1:
        p.error(f"--trials and --max-kills must be >= 1, got {args.trials} and {args.max_kills}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mheads-resume-trials-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        if args.stream:
            from mheads.data.shards import write_varied_folder

            folder = write_varied_folder(work / "varied", 96, 24, 4, sizes=(16, 40), seed=1)
            config = write_config(work / "run.yaml", **streamed_sections(folder))
        else:
            config = write_config(work / "run.yaml")
        env = {"MHEADS_CACHE": str(work / "cache")}
        t0 = time.monotonic()
        ref = run_module("train", "--config", config, "--out", work / "reference", "--no-progress", cwd=work,
                         env=env)
        if ref.returncode != 0:
            print(f"the reference run failed:\n{ref}", file=sys.stderr)
            return 1
        server = CliServer(work / "server")
        forked = server.run("train", "--config", config, "--out", work / "forked", "--no-progress")
        same = run_differences(work / "reference", work / "forked") if forked.returncode == 0 else ["failed"]
        print(f"reference: python -m mheads train in {ref.seconds:.1f}s; the same run forked from the trial "
              f"server in {forked.seconds:.1f}s: {'identical' if not same else 'DIFFERENT ' + str(same)}")
        if forked.returncode != 0 or same:
            return 1

        phases: Counter[str] = Counter()
        failed = 0
        for trial in range(args.trials):
            rng = random.Random(args.seed * 100_003 + trial)
            out = work / f"trial{trial:03d}"
            kills = kill_and_resume(server, config, out, rng, duration=forked.seconds,
                                    kills=rng.randint(1, args.max_kills))
            diffs = run_differences(work / "reference", out)
            failed += bool(diffs)
            for k in kills:
                phases["after a step" if k.phase.startswith("after step") else k.phase] += 1
            where = "; ".join(f"{k.after_s:.2f}s {k.phase}" for k in kills)
            print(f"trial {trial + 1:3d}: {len(kills)} kill(s) [{where}] -> "
                  f"{'bit-identical' if not diffs else 'DIFFERENT: ' + ', '.join(diffs)}", flush=True)
            if not diffs and args.workdir is None:
                shutil.rmtree(out)
        print(f"{args.trials - failed}/{args.trials} trials bit-identical to the uninterrupted run "
              f"({sum(phases.values())} kills: {', '.join(f'{n} {p}' for p, n in phases.most_common())}; "
              f"{time.monotonic() - t0:.0f}s)")
        return 1 if failed else 0
    finally:
        if server is not None:
            server.close()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
