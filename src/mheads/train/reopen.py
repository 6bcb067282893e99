"""Reopening a run's model from its folder, which is data someone may hand over: nothing named in it is
imported or called.

A run's ``run.json`` records the model it trained (``meta``: architecture, members, split, sizes, options).
Reopening it (``mheads eval`` / ``predict``, ``mheads.load_run``, ``train.init_from``) rebuilds that model:

- a **registered** architecture (``mheads list-models``) is rebuilt from the registry, with the recorded
  options as keyword arguments (data, never code);
- a model given by **import path** (``"package.module:function"``) or as a **Python object** to ``mheads.fit``
  is rebuilt only from a model the user names: ``--model package.module:function`` on the command line, or
  ``model=`` in Python (an ``nn.Module``, a zero-argument factory or an import path). The folder's own text is
  never imported: importing a module runs its code.

Every size in the description is bounded before anything is allocated: members, classes, channels and image
size must be integers in generous ranges, and the model's parameters, counted on the meta device (no memory),
must fit the memory there is.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from mheads.config.schema import PYTHON_MODEL
from mheads.core.checks import is_int
from mheads.core.resources import available_memory, gib
from mheads.models import is_import_path, list_models, model_factory
from mheads.runs.checkpoint import CheckpointError
from mheads.train.resources import parameter_bytes

__all__ = ["MAX_SIZES", "ModelSpec", "base_factory", "check_fits_memory", "check_meta", "needs_user_model"]

# A user's model: an nn.Module (its architecture; weights come from the run), a zero-argument factory, or an
# import path / registered name typed by the user.
ModelSpec = nn.Module | Callable[[], nn.Module] | str | None

# Upper bounds on what a run description may ask for, far above any real run (ImageNet-21k has 21,841
# classes); the memory check below is the real bound, these keep the arithmetic and messages sane.
MAX_SIZES = {"members": 4096, "num_classes": 10**7, "in_channels": 4096, "image_size": 65536}


def needs_user_model(architecture: object) -> bool:
    """True for a recorded architecture that only the user can name (an import path or a Python object)."""
    return architecture == PYTHON_MODEL or is_import_path(architecture)


def check_meta(meta: object, where: str) -> dict:
    """``meta`` if it is a model description whose sizes are integers within :data:`MAX_SIZES`; otherwise a
    ``CheckpointError`` naming ``where``, the field, the value and what is allowed."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: the model description is not a JSON object")
    for key, high in MAX_SIZES.items():
        if key not in meta:
            raise CheckpointError(f"{where}: the model description lacks {key!r}")
        value = meta[key]
        if not is_int(value) or not 1 <= value <= high:
            raise CheckpointError(
                f"{where}: the model description does not build a model ({key}: got "
                f"{_short(value)}; expected an integer in 1..{high})"
            )
    if "split" not in meta:
        raise CheckpointError(f"{where}: the model description lacks 'split'")
    if not isinstance(meta.get("options", {}), dict):
        raise CheckpointError(
            f"{where}: the model description does not build a model (options: got "
            f"{_short(meta['options'])}; expected a mapping)"
        )
    if not isinstance(meta.get("architecture"), str):
        raise CheckpointError(
            f"{where}: the model description does not build a model (architecture: got "
            f"{_short(meta.get('architecture'))}; expected a registered model name)"
        )
    return meta


def base_factory(meta: dict, model: ModelSpec, where: str) -> Callable[[], nn.Module] | nn.Module:
    """What the TreeNet of ``meta`` is built from: the registry's factory for a registered architecture, or
    the user's ``model``. Refuses, naming what to pass, an architecture only the user can name when ``model``
    is None; never imports anything the folder names."""
    arch = meta["architecture"]
    sizes = {
        "num_classes": meta["num_classes"],
        "in_channels": meta["in_channels"],
        "image_size": meta["image_size"],
    }
    options = meta.get("options", {})
    if model is None:
        if needs_user_model(arch):
            how = (
                "--model package.module:function on the command line, or model= in Python "
                "(mheads.load_run(path, model=...))"
            )
            what = (
                "a Python object given to mheads.fit" if arch == PYTHON_MODEL else f"the import path {arch!r}"
            )
            raise CheckpointError(
                f"{where}: this run's model is {what}; a run folder never names code to "
                f"import or call, so name the model yourself: {how}"
            )
        if arch not in list_models():
            raise CheckpointError(
                f"{where}: the model description does not build a model (model: unknown "
                f"name {_short(arch)}; registered models are: {', '.join(list_models())})"
            )
        return model_factory(arch, **sizes, **options)
    if isinstance(model, str):  # typed by the user: trusted, as a --config naming it would be
        try:
            return model_factory(model, **sizes, **options)
        except ValueError as err:
            raise CheckpointError(f"--model {model}: {err}") from None
    if isinstance(model, nn.Module) or callable(model):
        return model
    raise CheckpointError(
        f"model: got {type(model).__name__}; expected an nn.Module, a zero-argument "
        "factory or an import path 'package.module:function'"
    )


def check_fits_memory(factory, members: int, where: str) -> None:
    """Refuse a model whose ``members`` copies of the base (an upper bound: a shared trunk is counted per
    member) need more memory than there is, before any of it is allocated."""
    try:
        if isinstance(factory, nn.Module):  # the user's instance: already built
            one = sum(t.numel() * t.element_size() for t in (*factory.parameters(), *factory.buffers()))
        else:
            one = parameter_bytes(factory)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
        raise CheckpointError(
            f"{where}: the model description does not build a model ({' '.join(str(err).split())[:300]})"
        ) from None
    need, have = one * members, available_memory()
    if need > have:
        raise CheckpointError(
            f"{where}: its model needs {gib(need)} of weights ({members} members of "
            f"{gib(one)}), more than the {gib(have)} of memory available"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
