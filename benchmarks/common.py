"""Shared plumbing of the benchmark scripts: the machine, timing, and where results go."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
    except (OSError, AttributeError):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def seconds(work: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``work()``, waiting for a GPU to finish what it queued."""
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def command() -> str:
    return "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]
    )


def provenance() -> dict:
    """What every report starts with: the command, when, and on what."""
    return {"command": command(), "date": now(), "machine": machine()}


def run_line(report: dict) -> str:
    """The command, date and machine of a report, as the opening of its markdown."""
    m = report["machine"]
    return (
        f"`{report['command']}` on {report['date']}: {m['nproc']} CPUs ({m['cpu']}), GPU "
        f"{m.get('gpu', 'none')}, torch {m['torch']}, {m['threads']} thread(s)"
    )


def write_results(name: str, results: dict, markdown: str, out: Path = DOCS) -> None:
    """``<out>/<name>.json`` and ``<out>/<name>.md`` (``docs/benchmarks`` by default)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
