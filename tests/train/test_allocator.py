import sys

import pytest
import torch
import torch.nn.functional as F

from mheads.models import model_factory
from mheads.train.allocator import retain_freed_memory
from mheads.tree.treenet import TreeNet

resource = pytest.importorskip("resource")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_training_steps_stop_faulting_their_activations_in():
    # Without the call, glibc's default thresholds give this step thousands of faults every time (measured
    # 20,000-30,000 at batch 100); with it the freed activations are reused. Batch 50 (was 100) for the fast
    # tier: the faults scale with the batch; three steps on one thread (2026-12-07, a fresh process each)
    # measured 41,158 without the call at batch 50 (80,673 at 100) and 1 with it at either size.
    assert retain_freed_memory()
    assert retain_freed_memory()  # idempotent
    net = TreeNet(model_factory("cifar10_quick"), 4, None).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    x = torch.randn(50, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (50,))

    def step() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x).flatten(0, 1), y.repeat(4)).backward()
        opt.step()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(4):  # the heap grows to the step's peak (fragmentation may take a few steps)
        step()
    # ~40,000 without at batch 50 (a 4 KiB page each, 50 MB per step); a few thousand at most with it
    # (3,201 seen on a busy machine at batch 100 and two threads)
    assert sum(step() for _ in range(3)) < 7500
