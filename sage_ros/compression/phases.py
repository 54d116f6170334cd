"""A command's phases as a tqdm bar on stderr, mirrored into progress.json (progress.ProgressWriter).

    with PhaseBar(writer, total=3, job="quantize", enabled=not args.no_progress) as bar:
        bar.phase("loading"); ...; bar.phase("quantizing"); ...

Each phase() call completes the previous phase and names the one now running, so a long step shows what it is
and how long it has been running; the writer gets the same phase and step for the compression_node.
"""
from __future__ import annotations

from .progress import ProgressWriter


class PhaseBar:
    def __init__(self, writer: ProgressWriter, total: int, job: str, enabled: bool = True):
        from tqdm import tqdm

        self.writer, self.total, self.done, self.started = writer, int(total), 0, False
        self.bar = tqdm(total=self.total, desc=job, unit="step", disable=not enabled, dynamic_ncols=True,
                        mininterval=0.5, bar_format="{desc}: {n}/{total} steps |{bar:20}| {elapsed}{postfix}")

    def phase(self, name: str) -> None:
        if self.started and self.done < self.total:
            self.done += 1
            self.bar.update(1)
        self.started = True
        self.bar.set_postfix_str(name)
        self.writer.update(name, self.done, self.total, force=True)

    def close(self) -> None:
        if self.started and self.done < self.total:
            self.bar.update(self.total - self.done)
            self.done = self.total
        self.bar.close()

    def __enter__(self) -> "PhaseBar":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.bar.close()
