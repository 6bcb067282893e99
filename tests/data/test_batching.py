import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mheads.data import BatchPlan
from properties import property_settings


def test_epochs_are_permutations_and_batches_wrap():
    plan = BatchPlan(10, 4, seed=3)
    sequence = torch.cat([plan.indices(i) for i in range(5)])  # 20 = two full epochs
    assert sorted(sequence[:10].tolist()) == list(range(10))
    assert sorted(sequence[10:].tolist()) == list(range(10))
    assert not torch.equal(sequence[:10], sequence[10:])  # a new order each epoch
    assert torch.equal(plan.indices(2), torch.cat([plan.permutation(0)[8:], plan.permutation(1)[:2]]))
    assert plan.epoch_of(2) == 0 and plan.epoch_of(3) == 1


@property_settings(40)
@given(
    n=st.integers(1, 30), batch=st.integers(1, 70), seed=st.integers(0, 2**40), iteration=st.integers(0, 200)
)
def test_batch_depends_only_on_seed_and_iteration(n, batch, seed, iteration):
    plan = BatchPlan(n, batch, seed)
    start = iteration * batch
    epochs = range(start // n, (start + batch - 1) // n + 1)
    stream = torch.cat([plan.permutation(e) for e in epochs])
    expected = stream[start - epochs[0] * n : start - epochs[0] * n + batch]
    # A fresh plan (as after a resume) and a plan that walked other batches first agree.
    used = BatchPlan(n, batch, seed)
    for i in range(3):
        used.indices(i)
    assert torch.equal(BatchPlan(n, batch, seed).indices(iteration), expected)
    assert torch.equal(used.indices(iteration), expected)


def test_seeds_differ_and_returned_indices_are_safe_to_modify():
    assert not torch.equal(BatchPlan(100, 100, 0).indices(0), BatchPlan(100, 100, 1).indices(0))
    plan = BatchPlan(8, 8, 0)
    first = plan.indices(0)
    first.zero_()
    assert sorted(plan.indices(0).tolist()) == list(range(8))


def test_validation():
    with pytest.raises(ValueError, match="batch_size: got 0; expected an integer >= 1"):
        BatchPlan(10, 0, 0)
    with pytest.raises(ValueError, match="num_examples: got 0; expected an integer >= 1"):
        BatchPlan(0, 4, 0)
    with pytest.raises(ValueError, match="iteration: got -1; expected an integer >= 0"):
        BatchPlan(10, 4, 0).indices(-1)


def test_every_loader_is_a_batch_source_and_serves_a_batch_as_it_says():
    """The resident and streaming image loaders and a user's Datasets read whole or streamed implement
    BatchSource (issue 32: the loop reads only that interface)."""
    from mheads.config import config_from_settings
    from mheads.data.batching import BatchSource
    from mheads.data.dataset_stream import stream_datasets
    from mheads.data.pairs import TensorPairs
    from mheads.data.resident import prepare_data
    from mheads.data.streaming import prepare_stream
    from mheads.data.tensor_data import prepare_tensors

    cpu = torch.device("cpu")
    settings = {"model.members": 2, "data.bagging": True, "train.batch_size": 4, "train.iterations": 2}
    images = [(torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8), i % 2) for i in range(12)]
    x = torch.randn(12, 3)
    pairs = TensorPairs(x, x[:, :1])
    regression = config_from_settings({**settings, "task.name": "regression"})
    sources = {
        "resident": prepare_data(config_from_settings({**settings, "data.train_limit": 40}), cpu),
        "streaming": prepare_stream(config_from_settings(settings), cpu, train=images),
        "tensors": prepare_tensors(regression, cpu, pairs),
        "dataset stream": stream_datasets(
            TensorPairs(x, x[:, :1]), batch_size=4, seed=0, members=2, device=cpu
        ),
    }
    for name, source in sources.items():
        assert isinstance(source, BatchSource), name
        inputs, targets, weights = source.train_batch(1, torch.Generator().manual_seed(0))
        assert len(targets) == 4 and (weights is None or weights.shape == (2, 4)), name
        assert source.split_size("train") > 0 and isinstance(source.describe(), dict), name
        first, _ = next(iter(source.eval_batches("test", 5)))
        assert len(first) == 5, name
