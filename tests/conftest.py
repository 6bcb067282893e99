import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The whole session runs on one intra-op thread: the tests' ops are small, and on a shared 2-core machine
    the pool's wake-ups cost more than they save (a loaded run took minutes longer on 2 threads). A test of
    threading sets its own count and restores it; subprocesses keep torch's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded_rng():
    # Tests compare floats across code paths: every test starts from the same global RNG state (the thread
    # count is fixed for the whole session above).
    torch.manual_seed(0)
    yield


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (addopts): the whole fast tier as the README runs it (``pytest``, no paths) on two worker
    processes, one a core, each file on one worker (``--dist loadfile``: a module's fixtures train once);
    anything narrower (a file or test named while working, ``-m slow``, ``-k``) in this process, as before."""
    whole = config.args_source == pytest.Config.ArgsSource.TESTPATHS and not config.option.keyword
    fast = config.option.markexpr == "not slow"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 if whole and fast and cores >= 2 else 0


def shared_data_dir() -> Path:
    """Where the full data sets live (``MHEADS_DATA_DIR``, default ../shared/data beside the checkout)."""
    return Path(os.environ.get("MHEADS_DATA_DIR", REPO.parent / "shared" / "data"))


# ------------------------------------------------------ fixtures shared by the command-line reliability tests


@pytest.fixture(scope="module")
def work(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="session")
def _cli_servers(tmp_path_factory):
    """The session's fork server (each start imports torch: seconds): one, unless a failed test left it dead
    or busy."""
    servers: list = []
    yield servers
    for s in servers:
        s.close()


@pytest.fixture(scope="session", autouse=True)
def _prestart_servers(request, _cli_servers, tmp_path_factory):
    """Start the session's fork servers (the CLI's and tests/memcap.py's) at its first test, without waiting
    for them, where a collected test will use them: each imports torch for seconds, which on an idle second
    core overlaps the tests before its first use instead of delaying that test."""
    items = request.session.items
    if any("server" in item.fixturenames for item in items):
        from cli_harness import CliServer

        _cli_servers.append(CliServer(tmp_path_factory.mktemp("cli-server"), wait=False))
    capped = ("run_capped", "mheads_capped")
    if any(hasattr(getattr(item, "module", None), name) for item in items for name in capped):
        import memcap

        memcap.prestart()


@pytest.fixture(scope="module")
def server(_cli_servers, tmp_path_factory):
    """A fork server that imports torch once and runs ``mheads`` commands as killable child processes; shared
    by the modules of a session (it never runs a command itself: each child starts from the same state)."""
    from cli_harness import CliServer

    if not _cli_servers or _cli_servers[-1].proc.poll() is not None:
        _cli_servers.append(CliServer(tmp_path_factory.mktemp("cli-server")))
    s = _cli_servers[-1]
    yield s
    if s.busy is not None:  # a failed test left a command running: the next module gets a fresh server
        _cli_servers.remove(s)
        s.close()


@pytest.fixture(scope="module")
def good(work):
    """A valid config: 3 iterations, a checkpoint after each (2 kept)."""
    from cli_harness import write_config

    return write_config(
        work / "good.yaml",
        data={"bagging": False, "crop_padding": 0, "flip": False},
        train={"iterations": 3, "checkpoint_every": 1, "eval_every": 0},
    )


@pytest.fixture(scope="module")
def finished(server, work, good):
    """A finished run on the embedded (1-channel, 28x28, 10-class) data."""
    out = work / "finished"
    result = server.run("train", "--config", good, "--out", out, "--no-progress")
    assert result.returncode == 0, str(result)
    return out
