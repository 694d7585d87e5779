"""What a run reports while it trains: metrics.jsonl + TensorBoard (rank 0), and progress on
the terminal (a tqdm bar, or with ``progress: false`` a plain line at intervals, so a log
file shows the run is alive)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

PROGRESS_LINE_SECONDS = 30.0  # progress: false -> at most one line this often (and the last step)


class Metrics:
    """metrics.jsonl + TensorBoard, rank 0 only. A resumed run drops the lines past its
    checkpoint, so the file reads like one uninterrupted run."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():
            lines = [l for l in self.path.read_text().splitlines() if l and json.loads(l)["step"] <= resume_step]
            self.path.write_text("".join(l + "\n" for l in lines))
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        self.file = self.path.open("a")
        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step is not None else None)

    def log(self, record: dict, prefix: str) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"split": prefix, **record}) + "\n")
        self.file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()


class Progress:
    """A tqdm bar (``bar=True``), or one stderr line every PROGRESS_LINE_SECONDS; silent off rank 0."""

    def __init__(self, enabled: bool, bar: bool, total: int, initial: int):
        self.enabled, self.total = enabled, total
        self.bar = None
        self.last_line = time.monotonic()
        if enabled and bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, step: int, values: dict[str, float] | None) -> None:
        """Called once per step; ``values``: the losses and speed logged at this step, if any."""
        if not self.enabled:
            return
        if self.bar is not None:
            if values:
                self.bar.set_postfix({k: f"{v:.3f}" if k != "items/s" else f"{v:.0f}" for k, v in values.items()}, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if values and (now - self.last_line >= PROGRESS_LINE_SECONDS or step == self.total):
            shown = "  ".join(f"{k} {v:.3f}" if k != "items/s" else f"{k} {v:.0f}" for k, v in values.items())
            print(f"[k3m pretrain {time.strftime('%H:%M:%S')}] step {step}/{self.total}  {shown}", file=sys.stderr, flush=True)
            self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
