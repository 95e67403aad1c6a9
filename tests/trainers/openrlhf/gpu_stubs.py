"""Stand-ins for the GPU-only packages OpenRLHF imports at module level.

Installed here: OpenRLHF itself, torch (CPU), ray, transformers, aiohttp and the
pure-Python packages its reward and argument-parsing paths import. Not installed,
and stood in for by empty modules, only what needs a GPU to install or to mean
anything: vllm (the rollout engine), deepspeed (the training engine; its build
wants CUDA), flash_attn, ring_flash_attn, liger_kernel, bitsandbytes. Nothing on
the reward path calls into them: OpenRLHF merely names them at import time
(``import vllm``, ``@ray.remote`` classes that wrap them, type hints). A stub's
attribute is a placeholder class, so a call into one fails loudly, never silently.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

GPU_ONLY = ("vllm", "deepspeed", "flash_attn", "ring_flash_attn", "liger_kernel", "bitsandbytes")


class _Placeholder:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__module__}.{type(self).__name__} is a GPU-only stand-in (gpu_stubs.py)")


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in GPU_ONLY:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__version__ = "0.0.0+gpu-stub"
        return module

    def exec_module(self, module):
        pass


def install() -> None:
    """Make the GPU-only packages importable as stand-ins (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
