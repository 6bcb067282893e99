"""A restricted unpickler for the CIFAR "python version" batches.

`pickle.load` on a user's file can run any code: a pickle names callables by module and attribute
and calls them while loading. The CIFAR batches need only plain containers plus numpy's array
reconstruction, so `find_class` admits exactly those callables and refuses everything else before
it is ever looked up, let alone called.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from mheads.data.errors import DataError

__all__ = ["safe_unpickle"]

# numpy's own reconstruction helpers, taken from what ndarray pickles to (no import of private modules).
_RECONSTRUCT = np.empty(0, np.uint8).__reduce__()[0]
_FROMBUFFER = np.empty(0, np.uint8).__reduce_ex__(5)[0]


def _dtype(*args: object) -> np.dtype:
    dtype = np.dtype(*args)  # type: ignore[call-overload]
    if dtype.hasobject:
        # Object arrays would let the pickle place arbitrary objects in what should be pixel data.
        raise pickle.UnpicklingError(f"refused object dtype {dtype}")
    return dtype


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); no other codec is needed.
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Original CIFAR files were written by numpy 1.x ("numpy.core"); numpy 2 writes "numpy._core".
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _Refused(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"refused to load {module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        raise _Refused("refused a persistent id")


def safe_unpickle(data: bytes, where: str) -> object:
    """Unpickle `data` admitting only dicts, lists, strings, numbers and numpy arrays.

    Raises `DataError` naming `where` for a refused callable (a crafted file) or a corrupt pickle.
    Strings from Python 2 pickles are decoded as Latin-1 (as torchvision does for CIFAR).
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as exc:
        raise DataError(
            f"{where}: {exc}; a CIFAR python batch may hold only dicts, lists, strings, numbers "
            "and numpy arrays "
            "(crafted or foreign pickle?)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
    ) as exc:
        raise DataError(f"{where}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None
