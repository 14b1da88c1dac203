"""Where watch sends its records: a ``Sink`` is anything with ``write_meta``,
``write_steps`` and ``close``. Built in: ``JsonlSink`` (the default run log) and
``TensorBoardSink`` (scalars for TensorBoard), ``WandbSink`` (a W&B run). Add MLflow, ... by writing
a class with these three methods and passing it in ``gd.watch(sinks=[...])``. A sink may also have
``write_event(event)`` (an event record, e.g. an autofix round; ``Watcher.log_event``) and
``write_findings(findings)``; sinks without them are skipped for those.

Example:
    >>> class Printer:
    ...     def write_meta(self, meta): print("layers:", len(meta["layers"]))
    ...     def write_steps(self, steps): print([s["step"] for s in steps])
    ...     def close(self): pass
    >>> isinstance(Printer(), Sink)
    True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    """Receives the run-log records (plain JSON-able dicts, floats may be non-finite)."""

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Called once per attach, before any step of that attach."""

    def write_steps(self, steps: list[dict[str, Any]]) -> None:
        """Called at each flush with the flushed step records, in step order."""

    def close(self) -> None:
        """Called at detach; the sink may be written to again after a re-attach."""


def make_sink(name: str, log_dir: str, **kwargs: Any) -> Sink:
    """Build a built-in sink by name: "jsonl", "tensorboard" or "wandb"."""
    from graddoctor.errors import InputError

    if name == "jsonl":
        from graddoctor.runlog.sinks.jsonl import JsonlSink

        return JsonlSink(log_dir, **kwargs)
    if name == "tensorboard":
        from graddoctor.runlog.sinks.tensorboard import TensorBoardSink

        return TensorBoardSink(log_dir, **kwargs)
    if name == "wandb":
        from graddoctor.runlog.sinks.wandb import WandbSink

        return WandbSink(log_dir=log_dir, **kwargs)
    raise InputError(f"unknown sink {name!r} - use 'jsonl', 'tensorboard', 'wandb' or a Sink object")


__all__ = ["Sink", "make_sink"]
