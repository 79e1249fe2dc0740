"""What the training loop does when something goes wrong mid-run: out of memory, non-finite gradients, no disk.

Each helper turns a raw fault into a :class:`~signt5.errors.TrainingError` that says what
happened and which option changes it, so a run that must stop does so with a message, never with
NaN weights or a bare allocator traceback.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from signt5.errors import TrainingError

logger = logging.getLogger(__name__)

_OOM_MARKERS = ("out of memory", "can't allocate memory", "defaultcpuallocator: can't allocate",
                "failed to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError/MemoryError the CPU allocator raises."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MARKERS)


def out_of_memory_message(batch: dict[str, Any], config: Any, device: Any = None) -> str:
    """Name the batch that did not fit and every option that lowers memory."""
    size = len(batch.get("ids", ())) or int(batch["pose"].shape[0])
    frames = int(batch["pose"].shape[1])
    points = int(batch["pose"].shape[2])
    max_frames = config.data.max_frames
    hints = [f"--batch_size {max(1, config.batch_size // 2)} (with --grad_accum {config.grad_accum * 2} to keep "
             "the effective batch)", f"data.max_frames (now {max_frames or 'unset'}; e.g. {max(1, frames // 2)}) in "
             "the --config JSON to crop long samples"]
    if config.data.components != "hands":
        hints.append('data.components "hands" for fewer keypoints')
    where = f" on {device}" if device is not None else ""
    return (f"out of memory{where} on a batch of {size} samples x {frames} frames x {points} keypoints "
            f"(batch_size {config.batch_size}, grad_accum {config.grad_accum}); lower memory with " +
            "; or ".join(hints))


@contextmanager
def named_out_of_memory(batch: dict[str, Any], config: Any, device: Any = None) -> Iterator[None]:
    """Re-raise an out-of-memory error inside as a TrainingError naming the batch and the remedies."""
    try:
        yield
    except BaseException as e:
        if not is_out_of_memory(e):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise TrainingError(out_of_memory_message(batch, config, device)) from None


def clip_or_skip(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Any, config: Any,
                 ids: list[str]) -> bool:
    """Clip gradients; False (step skipped, gradients dropped) when their norm is not finite.

    A finite loss can still give inf gradients (an overflow, a sqrt at 0); clipping them
    multiplies by inf/inf = NaN and the optimiser writes NaN weights. Counted with the
    non-finite losses, so ``max_nonfinite_steps`` in a row stops the run.
    """
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if bool(torch.isfinite(norm)):
        return True
    optimizer.zero_grad(set_to_none=True)
    note_nonfinite(state, config, "gradient norm", ids)
    return False


def note_nonfinite(state: Any, config: Any, what: str, ids: list[str]) -> None:
    """Count a skipped step, log it with the batch's samples, and stop after too many in a row."""
    state.nonfinite_in_a_row += 1
    shown = ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
    logger.warning("non-finite %s at step %d (%d in a row): step skipped; batch: %s", what, state.global_step,
                   state.nonfinite_in_a_row, shown)
    if state.nonfinite_in_a_row >= config.max_nonfinite_steps:
        plural = what + ("es" if what.endswith("s") else "s")
        raise TrainingError(f"{state.nonfinite_in_a_row} non-finite {plural} in a row at step {state.global_step}:"
                              " stopping (lower --lr, or look at the samples logged above); the last checkpoint is "
                              "kept and holds finite weights")


def ensure_writable(folder: Path) -> None:
    """Fail at the start, not after an hour of training, when the output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"output folder {folder} is not writable ({e.strerror or e}); choose another "
                              "--output_dir or free/fix it") from None


def describe_os_error(error: OSError) -> str:
    """A short reason with a hint for the two faults users hit: a full disk and missing permission."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason}: the disk is full; free space or choose another --output_dir"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{reason}: no permission to write there; choose another --output_dir"
    return reason
