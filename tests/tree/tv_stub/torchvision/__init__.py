"""A stand-in for torchvision, only so that timm imports beside a CPU torch without torchvision (tests only).

``torchvision.ops.misc.FrozenBatchNorm2d`` is real (timm builds models with it); every other
``torchvision.*`` module is a placeholder whose attributes are inert classes: timm imports them at module
level for data transforms the tests never run.
"""

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.0.0+stub"


class _PlaceholderType(type):
    def __getattr__(cls, name):  # InterpolationMode.NEAREST and the like: distinct, hashable placeholders
        if name.startswith("__"):
            raise AttributeError(name)
        value = _PlaceholderType(name, (_Placeholder,), {"__module__": cls.__module__})
        setattr(cls, name, value)
        return value


class _Placeholder(metaclass=_PlaceholderType):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is a test stub here; this part of it is not available")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _PlaceholderType(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("torchvision."):
            return None
        for finder in sys.meta_path:  # a real file of the stub (ops.misc) wins
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
