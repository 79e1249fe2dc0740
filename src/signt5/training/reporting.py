"""Where a run reports as it trains: its TensorBoard writer and its progress bars, shared by the loop
(``trainer.py``) and the decoder phase (``decoder_phase.py``); rank 0 alone has them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def tensorboard_writer(folder: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``folder``; None (with a warning) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        logger.warning("tensorboard not installed: no TensorBoard logs")
        return None
    return SummaryWriter(str(folder))


def progress_bar(enabled: bool, total: int, initial: int, description: str = "train") -> Any:
    """A tqdm bar of ``total`` steps starting at ``initial``; None when not ``enabled`` (ranks other than 0)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="step", dynamic_ncols=True, mininterval=1.0)
