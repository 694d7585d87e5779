"""The machine a benchmark ran on, recorded beside its figures (shared by every bench_*.py)."""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def describe(packages: tuple[str, ...]) -> dict:
    """CPU, memory, load at start, Python, and the versions of ``packages``."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: version(name) for name in packages},
        "note": "shared machine: other jobs may run concurrently, wall times are noisy",
    }
