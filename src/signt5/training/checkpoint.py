"""Checkpoints that survive being killed mid-write, and the state a resumed run needs.

A checkpoint folder is written as ``<name>.tmp`` and swapped into place with
``os.replace``; the previous one is kept as ``<name>.old`` until the swap is done, so
at any instant either a complete new or a complete old checkpoint exists, and a
half-written ``.tmp`` is never picked up.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from signt5.errors import SignT5Error

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"


def write_checkpoint_dir(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` and atomically make ``tmp_dir`` the folder ``target``."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def find_checkpoint(target: str | Path) -> Path | None:
    """The complete checkpoint at ``target``, or its ``.old`` twin if a swap was interrupted; never ``.tmp``."""
    target = Path(target)
    for candidate in (target, target.with_name(target.name + ".old")):
        if (candidate / STATE_FILE).exists() or (candidate / "config.json").exists():
            return candidate
    return None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state()[1].tolist(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(("MT19937", np.asarray(state["numpy"], dtype=np.uint32), 0, 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(folder: Path, state: dict[str, Any]) -> None:
    torch.save(state, folder / STATE_FILE)


def load_training_state(folder: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint from elsewhere cannot run code."""
    path = folder / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch refuses globals outside its allow-list with this
        raise SignT5Error(f"{path} cannot be loaded safely: it asks for more than tensors and plain data "
                          f"({str(e).splitlines()[0][:200]}); it was not written by signt5") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise SignT5Error(f"{path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))


class RunLock:
    """Holds ``<run folder>/.lock`` (pid, host) while a run writes there, so two runs cannot interleave their
    logs and checkpoints; a lock whose process is gone (a killed run) is taken over."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / ".lock"
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({**self.owner, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = self._holder()
            if other is not None and self._alive(other):
                raise SignT5Error(
                    f"{self.path.parent} is in use by another run (pid {other.get('pid')} on {other.get('host')}, "
                    f"started {other.get('started', '?')}): wait for it, or give another --output_dir "
                    f"(if that run is gone, delete {self.path})") from None
            logger.warning("%s: taking over the lock of a run that is gone (%s)", self.path.parent, other)
            tmp = self.path.with_name(f".lock.{os.getpid()}")
            tmp.write_text(record)
            os.replace(tmp, self.path)
            return self
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return self

    def __exit__(self, *exc: Any) -> None:
        if (self._holder() or {}).get("pid") == self.owner["pid"]:
            self.path.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable: a lock cut short by a crash, taken over

    def _alive(self, other: dict) -> bool:
        """Whether the lock's process still runs; one on another host cannot be checked, so it counts as alive."""
        if other.get("host") != self.owner["host"]:
            return True
        try:
            os.kill(int(other["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, TypeError, ValueError):
            return isinstance(other.get("pid"), int)
        return True

