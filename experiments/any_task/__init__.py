"""Issue 32's four examples of training an ensemble on a task other than classification, each a data module
and a train script (a TreeNet, a task from `mheads.tasks` and its ensemble loss):

- `multimodal` / `train_multimodal`: 1-D regression whose answer has 2-3 modes (multiple hypotheses, EMD);
- `sunspots` / `train_sunspots`: forecasting yearly sunspot numbers (statsmodels' data set);
- `shapes` / `train_shapes`: segmentation of shapes whose class is ambiguous (two valid labels);
- `text` / `train_text`: a Hugging Face-style sequence classifier (dict in, `ModelOutput` out).

Each train script runs at the "smoke" scale by default (seconds on a CPU) and names its "full" settings:
`python -m mheads.experiments.any_task.train_multimodal --scale full`. Every train script goes through
`mheads.fit(..., task=...)` (`fitting` holds the sunspots and shapes examples' settings); only
`sweep_multimodal` still trains with the plain loop of `loop`. The RESULTS.md sections come from the
`sweep_*` scripts (every compared loss over seeds: `seeds.csv` / `results.csv` via `record`, in the paper
sweeps' format), `figures` (the PNGs, from the committed CSVs) and `tables` (the markdown tables). Not shipped
in the wheel (the package list in pyproject.toml names only `mheads.experiments`).
"""
