"""What every ``bench/`` script shares: the machine tag on each JSON line, the machine line
at the top of each table, the rule that skips emulated-precision rows, and a wall-clock
budget for repetitions.

Every figure is printed by :func:`emit`, which merges :func:`lmforge.hardware.machine_tag`
(``cpu``, ``isa``, ``isa_caps``, ``threads``) into the object, so that figures from
different machines (or from one machine under different ISA caps) are never compared by
mistake. A figure that compares against a row that was not run is still printed, with
``"skipped": "<reason>"`` and ``lmforge``/``peer``/``ratio``/``met`` null.

The scripts are run as ``python bench/NAME.py``, so this module is imported as
``_common`` (Python puts the script's folder first on ``sys.path``).
"""

from __future__ import annotations

import json
import time

from lmforge.hardware import bf16_speed, machine_tag


def machine_line() -> str:
    """One line for the table header: CPU model, ISA in use, ISA caps, torch threads."""
    t = machine_tag()
    caps = "" if t["isa_caps"] == "none" else f" (capped: {t['isa_caps']})"
    return f"machine: {t['cpu']}; isa: {t['isa']}{caps}; {t['threads']} threads"


def emit(obj: dict, skipped: str | None = None) -> None:
    """Print ``obj`` as one JSON line with the machine tag merged in. With ``skipped``
    (the reason), the figure was not measured: ``lmforge``, ``peer``, ``ratio`` and
    ``met`` are null and ``skipped`` says why."""
    out = dict(obj)
    if skipped is not None:
        out.update(lmforge=None, peer=None, ratio=None, met=None, skipped=skipped)
    tag = machine_tag()
    clash = set(out) & set(tag)
    if clash:
        raise ValueError(f"figure fields {sorted(clash)} would be overwritten by the tag")
    print(json.dumps({**out, **tag}), flush=True)


def bf16_skip_reason() -> str | None:
    """Why bf16 rows are not run on this CPU (bf16 is emulated: no bf16 instructions, or
    oneDNN capped below them), or ``None`` where bf16 runs natively. The decision is
    :attr:`lmforge.hardware.Bf16Speed.emulated` of the same cached measurement that
    ``precision: auto`` uses."""
    speed = bf16_speed()
    if not speed.emulated:
        return None
    return (f"bf16 is emulated on this CPU ({speed.bf16_gflops:.1f} GFLOP/s vs "
            f"{speed.fp32_gflops:.0f} fp32)")


def skipped_row(name: str, reason: str, width: int = 24) -> str:
    """A table row for an implementation that was not run."""
    return f"{name:<{width}}skipped: {reason}"


class Budget:
    """A wall-clock budget for the timed repetitions of a script: :meth:`spent` turns
    true ``seconds`` after it was made (never with ``seconds=None``). Scripts check it
    between repetitions, after the first, so a median always has a full first round."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = time.perf_counter()

    def spent(self) -> bool:
        return self.seconds is not None and time.perf_counter() - self.start >= self.seconds
