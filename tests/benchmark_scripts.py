"""Loading a script of benchmarks/ as a module, for the tests of its pure parts and tiny runs.

benchmarks/ is a folder of scripts, not a package: a script is loaded from its file, under a name
of its own, with benchmarks/ on ``sys.path`` for the scripts that import each other by name
(``suite``, ``speed``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as the module ``pgrad_benchmark_<name>`` (loaded again each call)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"pgrad_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module
