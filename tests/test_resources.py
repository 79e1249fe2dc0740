"""Resource download, all offline: a fake Hub on localhost, a closed port, offline mode, the cache, local copies.

The real ``huggingface_hub.snapshot_download`` runs in every download test; only the server is fake.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from signt5.errors import SignT5Error
from signt5.resources import (
    ResourceError,
    dataset_problems,
    download_dataset,
    download_model,
    model_problems,
    staging_dir,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
CLOSED_PORT = "http://127.0.0.1:9"
SRC = str(Path(__file__).resolve().parents[1] / "src")


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the Hub's HTTP API for snapshot_download: repo info, tree listing, resolve (HEAD/GET)."""

    repos: dict[tuple[str, str], dict[str, bytes]] = {}
    missing: set[str] = set()
    log: list[tuple[str, str]] = []
    url = ""

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.log.append((self.command, path))
        if m := re.fullmatch(r"/api/(model|dataset)s/([^/]+/[^/]+)/(revision|tree)/([^/]+)/?", path):
            files = self.repos.get((m[1], m[2]))
            if files is None:
                return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
            if m[3] == "revision":
                return self._json({"id": m[2], "sha": SHA, "siblings": [{"rfilename": f} for f in files]})
            return self._json([{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                               for f, b in files.items()])
        if m := re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            files = self.repos.get(("dataset" if m[1] else "model", m[2]), {})
            if m[4] not in files or m[4] in self.missing:
                return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
            body = files[m[4]]
            return self._send(200, body, {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'})
        self._send(404)

    do_HEAD = do_GET


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real, tiny UMT5 checkpoint with a real (Unigram) tokenizer.json, made offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-umt5")
    config = UMT5Config(d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, vocab_size=300,
                        d_kv=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    UMT5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=40, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tokenizer.train_from_iterator(["hello world", "sign language", "καλημέρα κόσμε"] * 5, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    return folder


@pytest.fixture()
def hub(tiny_model_dir, tmp_path, monkeypatch):
    """A fake Hub serving the tiny model and a small data set; the Hugging Face cache lives in tmp_path."""
    from huggingface_hub import constants

    FakeHub.repos = {
        ("model", "org/tiny-umt5"): {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()},
        ("dataset", "org/signs"): {"manifest.csv": b"id,path,text\na,poses/a.pose,hello\n",
                                   "poses/a.pose": b"not really a pose", "README.md": b"# signs\n"},
    }
    FakeHub.missing, FakeHub.log = set(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    FakeHub.url = f"http://127.0.0.1:{server.server_port}"  # passed as endpoint=: hf_hub_url ignores a patched ENDPOINT
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield FakeHub
    server.shutdown()
    server.server_close()


def _loads(folder: Path) -> None:
    from transformers import AutoTokenizer, UMT5ForConditionalGeneration

    assert UMT5ForConditionalGeneration.from_pretrained(folder).config.d_model == 16
    assert AutoTokenizer.from_pretrained(folder)("hello world").input_ids


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_model_download_through_the_real_snapshot_code(hub, tmp_path):
    target = tmp_path / "models" / "umt5"
    assert download_model("org/tiny-umt5", target, endpoint=hub.url) == target
    _loads(target)
    assert not (target / ".cache").exists()
    assert _leftovers(target.parent) == ["umt5"]
    hub.log.clear()
    assert download_model("org/tiny-umt5", target, endpoint=hub.url) == target  # complete already: reused, no request
    assert hub.log == []


def test_interrupted_download_leaves_no_target_and_resumes(hub, tmp_path):
    target = tmp_path / "models" / "umt5"
    hub.missing = {"model.safetensors"}
    with pytest.raises(ResourceError, match="org/tiny-umt5.*running again resumes"):
        download_model("org/tiny-umt5", target, endpoint=hub.url)
    assert not target.exists()
    staging = staging_dir(target, "org/tiny-umt5")
    assert (staging / "config.json").is_file() and not (staging / "model.safetensors").exists()
    with pytest.raises(ResourceError, match="only partly downloaded.*running again resumes"):
        download_model("org/tiny-umt5", target, endpoint=CLOSED_PORT)
    assert not target.exists()
    hub.missing, hub.log = set(), []
    download_model("org/tiny-umt5", target, endpoint=hub.url)
    fetched = {path.rsplit("/", 1)[-1] for method, path in hub.log if method == "GET" and "/resolve/" in path}
    assert fetched == {"model.safetensors"}
    assert not staging.exists()
    _loads(target)


def test_repo_not_found_is_a_clear_error(hub, tmp_path):
    with pytest.raises(ResourceError, match="org/nope was not found on the Hub") as info:
        download_model("org/nope", tmp_path / "models" / "umt5", endpoint=hub.url)
    assert isinstance(info.value, SignT5Error) and "--local_model_path" in str(info.value)
    assert not (tmp_path / "models").exists()


def test_unreachable_hub_falls_back_to_the_cache(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants, snapshot_download

    snapshot_download("org/tiny-umt5", endpoint=hub.url)  # fills the (temporary) shared cache in the hub's own layout
    assert (Path(constants.HF_HUB_CACHE) / "models--org--tiny-umt5" / "refs" / "main").read_text() == SHA
    target = download_model("org/tiny-umt5", tmp_path / "models" / "umt5", endpoint=CLOSED_PORT)
    _loads(target)
    assert not (target / "model.safetensors").is_symlink()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.log.clear()
    _loads(download_model("org/tiny-umt5", tmp_path / "elsewhere" / "umt5", endpoint=hub.url))
    assert hub.log == []


def test_dataset_download_merges_into_an_existing_data_folder(hub, tmp_path):
    data = tmp_path / "data"
    (data / "fingerspelling").mkdir(parents=True)
    (data / "fingerspelling" / "manifest.csv").write_text("id,path\n")
    download_dataset("org/signs", data, endpoint=hub.url)
    assert (data / "manifest.csv").read_bytes() == hub.repos[("dataset", "org/signs")]["manifest.csv"]
    assert (data / "poses" / "a.pose").is_file() and (data / "fingerspelling" / "manifest.csv").is_file()
    assert not (data / ".cache").exists()
    assert not [name for name in _leftovers(tmp_path) if name.endswith(".partial")]
    download_dataset("org/signs", data, endpoint=hub.url)  # identical files: fine
    (data / "manifest.csv").write_text("id,path\nlocal,edit\n")
    with pytest.raises(ResourceError, match="manifest.csv.*--overwrite"):
        download_dataset("org/signs", data, endpoint=hub.url)
    assert (data / "manifest.csv").read_text() == "id,path\nlocal,edit\n"
    download_dataset("org/signs", data, overwrite=True, endpoint=hub.url)
    assert (data / "manifest.csv").read_bytes() == hub.repos[("dataset", "org/signs")]["manifest.csv"]


def test_dataset_without_manifest_is_refused(hub, tmp_path):
    hub.repos[("dataset", "org/empty")] = {"README.md": b"nothing\n"}
    with pytest.raises(ResourceError, match="missing a manifest"):
        download_dataset("org/empty", tmp_path / "data", endpoint=hub.url)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("env, reason", [({"HF_ENDPOINT": CLOSED_PORT}, "the Hub could not be reached"),
                                         ({"HF_HUB_OFFLINE": "1"}, "offline mode is on")])
def test_no_network_in_a_fresh_process(tmp_path, env, reason):
    """The environment variables a user would set, read by huggingface_hub at import."""
    code = ("from signt5.resources import download_model, ResourceError\n"
            "try:\n    download_model(target='models/umt5')\n"
            "except ResourceError as e:\n    print(e)\nelse:\n    print('no error')\n")
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", **env}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60).stdout
    assert "google/umt5-small could not be downloaded" in out
    assert "hf download google/umt5-small" in out and "--local_model_path" in out
    assert reason in out and "not in the Hugging Face cache" in out
    assert not (tmp_path / "models").exists()


def test_local_model_is_checked_copied_and_loads(tiny_model_dir, tmp_path):
    target = download_model(local_path=tiny_model_dir, target=tmp_path / "models" / "umt5")
    _loads(target)
    assert _leftovers(target.parent) == ["umt5"]
    with pytest.raises(ResourceError, match="already exists.*--overwrite"):
        download_model(local_path=tiny_model_dir, target=target)
    assert download_model(local_path=tiny_model_dir, target=target, overwrite=True) == target
    assert download_model(local_path=target, target=target) == target
    _loads(target)


def test_local_model_missing_files_writes_nothing(tiny_model_dir, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    with pytest.raises(ResourceError) as info:
        download_model(local_path=partial, target=tmp_path / "models" / "umt5")
    message = str(info.value)
    assert "weights" in message and "tokenizer" in message and "config.json" not in message.split("missing")[1]
    assert not (tmp_path / "models").exists()
    with pytest.raises(ResourceError, match="does not exist"):
        download_model(local_path=tmp_path / "nowhere", target=tmp_path / "models" / "umt5")


def test_local_dataset_folder_and_single_file(tmp_path):
    source = tmp_path / "source"
    (source / "poses").mkdir(parents=True)
    (source / "train.jsonl").write_text('{"id": "a", "path": "poses/a.pose"}\n')
    (source / "poses" / "a.pose").write_bytes(b"x")
    (source / ".cache" / "huggingface").mkdir(parents=True)
    data = download_dataset("unused/id", tmp_path / "data", local_path=source)
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) == ["poses/a.pose", "train.jsonl"]
    pkl = tmp_path / "data.pkl"
    pkl.write_bytes(b"\x80\x04N.")
    download_dataset("unused/id", tmp_path / "data", local_path=pkl)
    assert (data / "data.pkl").read_bytes() == pkl.read_bytes()
    with pytest.raises(ResourceError, match="contains the target"):
        download_dataset(None, source / "inner", local_path=source)
    with pytest.raises(ResourceError, match="--dataset_repo_id"):
        download_dataset(None, tmp_path / "other")
    (source / "poses" / "a.pose").unlink()
    (source / "poses" / "a.pose").mkdir()
    (source / "poses" / "a.pose" / "x.jsonl").write_text("{}\n")
    with pytest.raises(ResourceError, match="a.pose is in the way"):
        download_dataset(None, data, local_path=source, overwrite=True)
    assert (data / "poses" / "a.pose").read_bytes() == b"x"
    assert not [name for name in _leftovers(tmp_path) if name.endswith(".partial")]
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(ResourceError, match="manifest"):
        download_dataset("unused/id", tmp_path / "other", local_path=notes)
    assert not (tmp_path / "other").exists()


def test_checks_name_what_is_missing(tiny_model_dir, tmp_path):
    assert model_problems(tiny_model_dir) == []
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "pytorch_model-1.bin"}}))
    (tmp_path / "pytorch_model-2.bin").write_bytes(b"")
    assert model_problems(tmp_path) == ["config.json", "weight shard pytorch_model-1.bin (listed in "
                                        "pytorch_model.bin.index.json)", "tokenizer (spiece.model or tokenizer.json)"]
    assert dataset_problems(tmp_path) == ["a manifest (*.csv or *.jsonl) or a data.pkl"]
    assert staging_dir("models/umt5", "google/umt5-small", "v1") == Path("models/.umt5.google--umt5-small@v1.partial")
