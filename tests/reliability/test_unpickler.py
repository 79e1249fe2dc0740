"""Classic pickle exploits, every protocol, nested anywhere, through every entry point: refused, never run.

Each exploit would create a marker file if it ran; the tests assert the refusal *and* that the marker
is absent. Hand-written opcode streams cover what ``pickle.dumps`` would not produce by itself.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from signt5.cli import main
from signt5.data.cache import prepare_all
from signt5.data.dataset import DataConfig
from signt5.errors import SignT5Error, UnsafePickleError
from signt5.data.manifest import ManifestEntry
from signt5.data.readers import load_sample, read_pickle, read_pickle_keys
from signt5.training import checkpoint as ckpt


class Exploit:
    """Pickles as ``func(*args)``: what an attacker's data.pkl would run on load."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _exploits(marker) -> dict[str, Exploit]:
    touch = f"touch {marker}"
    return {
        "os.system": Exploit(os.system, (touch,)),
        "builtins.eval": Exploit(builtins.eval, (f"open({str(marker)!r}, 'w').close()",)),
        "builtins.exec": Exploit(builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.Popen": Exploit(subprocess.Popen, (["touch", str(marker)],)),
        "subprocess.check_output": Exploit(subprocess.check_output, (["touch", str(marker)],)),
        # getattr(__import__("os"), "system"): the chain that reaches anything without naming it directly
        "builtins.getattr": Exploit(builtins.getattr, (Exploit(builtins.__import__, ("os",)), "system")),
    }


def _nestings(exploit, sample):
    return {
        "top level": exploit,
        "as a sample": {"s1": sample, "evil": exploit},
        "inside a record": {"s1": {"keypoints": sample, "gloss": exploit}},
        "deep in containers": {"s1": {"keypoints": sample, "meta": [(1, {"x": [exploit]})]}},
    }


CASES = [(name, nesting, protocol) for name in _exploits("m") for nesting in
         ("top level", "as a sample", "inside a record", "deep in containers") for protocol in range(6)]


@pytest.mark.parametrize("name, nesting, protocol", CASES, ids=[f"{n}-{w}-p{p}" for n, w, p in CASES])
def test_exploit_is_refused_and_never_runs(tmp_path, name, nesting, protocol):
    marker = tmp_path / "pwned"
    sample = np.ones((3, 137, 2), np.float32)
    payload = _nestings(_exploits(marker)[name], sample)[nesting]
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    for read in (read_pickle, read_pickle_keys, lambda p: load_sample(p, "s1")):
        with pytest.raises(UnsafePickleError, match=r"data.pkl: refused to load") as info:
            read(path)
        assert name.split(".")[-1] in str(info.value) or "posix" in str(info.value)
    assert not marker.exists()


def _stack_global(command: bytes) -> bytes:
    return b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(command)]) + command + b"\x85R."


@pytest.mark.parametrize("stream", [
    lambda cmd: b"cos\nsystem\n(S'" + cmd + b"'\ntR.",  # protocol 0 GLOBAL + REDUCE, hand-written
    lambda cmd: b"cposix\nsystem\n(S'" + cmd + b"'\ntR.",
    lambda cmd: b"c__builtin__\neval\n(S'__import__(\"os\").system(\"" + cmd + b"\")'\ntR.",
    _stack_global,  # protocol 4 STACK_GLOBAL
    lambda cmd: b"(cos\nsystem\nS'" + cmd + b"'\no.",  # OBJ: calls without REDUCE
    lambda cmd: b"(S'" + cmd + b"'\nios\nsystem\n.",  # INST
], ids=["GLOBAL-os", "GLOBAL-posix", "GLOBAL-eval", "STACK_GLOBAL", "OBJ", "INST"])
def test_hand_written_opcode_streams(tmp_path, stream):
    marker = tmp_path / "pwned"
    path = tmp_path / "data.pkl"
    path.write_bytes(stream(f"touch {marker}".encode()))
    with pytest.raises(UnsafePickleError, match="data.pkl: refused to load"):
        read_pickle(path)
    assert not marker.exists()
    # positive control: the stream is a working exploit, plain pickle (in a child process) does run it
    control, control_marker = tmp_path / "control.pkl", tmp_path / "control-ran"
    control.write_bytes(stream(f"touch {control_marker}".encode()))
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                    str(control)], timeout=60, capture_output=True)
    assert control_marker.exists()


def test_safe_numpy_reconstruction_still_loads(tmp_path):
    """The allow-list is not so tight that honest data fails: arrays of every protocol load."""
    arr = np.random.default_rng(0).uniform(1, 9, (3, 137, 2)).astype(np.float32)
    for protocol in range(6):
        (tmp_path / "data.pkl").write_bytes(pickle.dumps({"s1": {"keypoints": arr, "gloss": "A"}}, protocol))
        np.testing.assert_array_equal(read_pickle(tmp_path / "data.pkl")["s1"].coords, arr)


def test_exploit_in_a_training_set_is_skipped_not_run(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "data.pkl").write_bytes(pickle.dumps({"s1": np.ones((3, 137, 2)), "s2": Exploit(os.system, (
        f"touch {marker}",))}))
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).uniform(50, 400, (4, 137, 2)).astype(np.float32))
    entries = [ManifestEntry("evil", tmp_path / "data.pkl", gloss="X"), ManifestEntry("good", good, gloss="Y")]
    prepared = prepare_all(entries, DataConfig(), None)
    assert [e.id for e in prepared.entries] == ["good"]
    assert len(prepared.skipped) == 1 and "refused to load" in prepared.skipped[0]
    assert not marker.exists()


def test_cli_refuses_exploit_with_exit_code_2(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "data.pkl").write_bytes(pickle.dumps({"s1": Exploit(os.system, (f"touch {marker}",))}))
    assert main(["visualize", "--input_file", str(tmp_path / "data.pkl"), "--output", str(tmp_path / "x.html")]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists()


def test_poisoned_training_state_is_refused_on_resume(tmp_path):
    """``--resume`` loads optimiser state with torch's weights-only unpickler: a planted pickle cannot run."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "checkpoint-last"
    folder.mkdir()
    torch.save({"run": Exploit(os.system, (f"touch {marker}",))}, folder / ckpt.STATE_FILE)
    with pytest.raises(SignT5Error, match=f"{ckpt.STATE_FILE}.*cannot be loaded safely"):
        ckpt.load_training_state(folder)
    assert not marker.exists()
