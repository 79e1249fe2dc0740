"""`signt5 infer` in process on a tiny trained model: by sample id, by .pose file, by folder, and bad input.

Every check compares the CLI's output with ``Predictor.predict_samples`` on the same samples, never with hard-coded
text, on the ``speaking_model`` (conftest): its CTC head spells a non-empty text of each sample's own, so a
difference in how two paths read or prepare a sample shows (the 2-step model itself mostly says "").
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil

import pytest
from pose_format.utils.generic import fake_pose
from safetensors.torch import load_file, save_file
from transformers.utils import logging as hf_logging

from signt5.cli import main
from signt5.data.layout import layout_by_name
from signt5.data.readers import load_sample, read_samples
from signt5.decoding.predictor import Predictor
from signt5.inference import collect_samples


@pytest.fixture(scope="module")
def predictor(speaking_model) -> Predictor:
    return Predictor.load(speaking_model)


def _infer(model_dir, input_file, *extra: str) -> int:
    return main(["infer", "--model_dir", str(model_dir), "--input_file", str(input_file), *extra])


def _lines(out: str) -> list[str]:
    return out.split("\n")[:-1]  # keep empty lines: a path that lost a text must not pass


def _spoken(texts: list[str]) -> list[str]:
    """Texts that tell two code paths apart: none empty, and not all the same."""
    assert all(texts) and (len(texts) == 1 or len(set(texts)) > 1), texts
    return texts


def test_sample_id_of_a_data_pkl_prints_its_text(speaking_model, tiny_corpus, predictor, capsys, caplog):
    pkl = tiny_corpus / "data.pkl"
    hf_logging.set_verbosity_warning()  # as in a fresh process: main must silence them itself
    hf_logging.enable_progress_bar()
    capsys.readouterr()
    caplog.set_level(logging.INFO, logger="signt5")
    assert _infer(speaking_model, pkl, "--sample_id", "ukl-test-00001") == 0
    printed = capsys.readouterr()
    expected = _spoken(predictor.predict_samples([load_sample(pkl, "ukl-test-00001")]))
    assert _lines(printed.out) == expected
    assert "Loading weights" not in printed.err and "LOAD REPORT" not in printed.err
    assert any("model loaded in" in r.getMessage() and "predicted in" in r.getMessage() for r in caplog.records)


def test_pose_file_gives_the_same_text_as_its_pkl_sample(speaking_model, tiny_corpus, predictor, capsys):
    pose = tiny_corpus / "poses" / "test" / "ukl-test-00001.pose"
    capsys.readouterr()
    assert _infer(speaking_model / "checkpoint-best", pose, "--sign_language", "ukl") == 0
    printed = _lines(capsys.readouterr().out)
    from_pkl = _spoken(predictor.predict_samples([load_sample(tiny_corpus / "data.pkl", "ukl-test-00001")]))
    assert printed == predictor.predict_samples([load_sample(pose)], "ukl") == from_pkl
    assert predictor.predict_samples([load_sample(pose)]) != from_pkl  # the sign language does reach the model


def test_folder_prints_id_and_text_per_file(speaking_model, tiny_corpus, predictor, capsys, caplog):
    folder = tiny_corpus / "poses" / "test"
    capsys.readouterr()
    caplog.set_level(logging.WARNING, logger="signt5")
    assert _infer(speaking_model, folder) == 0
    lines = _lines(capsys.readouterr().out)
    files = sorted(folder.glob("*.pose"))
    texts = _spoken(predictor.predict_samples([load_sample(f) for f in files]))
    assert lines == [f"{f.stem}\t{t}" for f, t in zip(files, texts)]
    # .pose files carry no sign language, and the model was trained with one on every sample
    assert any("4 sample(s) have no sign language" in r.getMessage() for r in caplog.records)


def test_every_sample_of_a_data_pkl(speaking_model, tiny_corpus, predictor, capsys):
    pkl = tiny_corpus / "data.pkl"
    capsys.readouterr()
    assert _infer(speaking_model, pkl, "--batch_size", "5") == 0
    samples = read_samples(pkl)
    texts = _spoken(predictor.predict_samples(list(samples.values())))
    assert _lines(capsys.readouterr().out) == [f"{i}\t{t}" for i, t in zip(samples, texts)]


def test_json_with_sign_language_and_beams(speaking_model, tiny_corpus, predictor, capsys, monkeypatch):
    from signt5.decoding import predictor as predictor_module

    beams = []
    real = predictor_module.generate_texts

    def spy(*args, **kwargs):
        beams.append(args[4])  # generate_texts(model, tokenizer, items, batch_size, num_beams, ...)
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor_module, "generate_texts", spy)
    folder = tiny_corpus / "poses" / "dev"
    capsys.readouterr()
    # rate normalisation off: its CTC pass would be a second call, and CTC decoding reuses that pass's texts
    assert _infer(speaking_model, folder, "--json", "--sign_language", "ase", "--num_beams", "2",
                  "--rate_band", "0") == 0
    records = [json.loads(line) for line in _lines(capsys.readouterr().out)]
    assert beams == [2]
    samples = collect_samples(folder)
    assert [r["id"] for r in records] == [s.sample_id for s in samples]
    monkeypatch.setattr(predictor, "rate_band", 0.0)  # as the command ran; the shared fixture is restored after
    texts = _spoken(predictor.predict_samples(samples, "ase", num_beams=2))
    assert [r["text"] for r in records] == texts != predictor.predict_samples(samples, num_beams=2)
    assert {r["sign_language"] for r in records} == {"ase"}
    assert all(r["source"].endswith(".pose") for r in records)


# --- bad input: one line on stderr, exit code 2, no traceback -------------------------------------------------

def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in captured.err and captured.out == ""
    return errors[0]


def test_unknown_sample_id_lists_close_matches(tiny_model, tiny_corpus, capsys):
    capsys.readouterr()
    assert _infer(tiny_model, tiny_corpus / "data.pkl", "--sample_id", "ase-tset-00001") == 2
    error = _one_line_error(capsys)
    assert "no sample 'ase-tset-00001'" in error and "close matches:" in error and "ase-test-00001" in error


def test_folder_that_is_not_a_model(tiny_corpus, tmp_path, capsys):
    capsys.readouterr()
    assert _infer(tiny_corpus, tiny_corpus / "data.pkl", "--sample_id", "ase-test-00000") == 2
    assert f"{tiny_corpus} is not a signt5 model" in _one_line_error(capsys)
    assert _infer(tmp_path / "absent", tiny_corpus / "data.pkl") == 2
    assert "does not exist" in _one_line_error(capsys)


def test_checkpoint_that_does_not_fit_the_code(tiny_model, tiny_corpus, tmp_path, capsys):
    """A checkpoint from other code or config: transformers alone would raise a RuntimeError."""
    checkpoint = tmp_path / "changed"
    shutil.copytree(tiny_model / "checkpoint-best", checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["pose_encoder"]["gcn_channels"] *= 2
    (checkpoint / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert _infer(checkpoint, tiny_corpus / "data.pkl", "--sample_id", "ase-test-00000") == 2
    error = _one_line_error(capsys)
    assert "weight(s) do not fit this version of the model" in error
    assert re.search(r"\(\d+, 8\) vs \(\d+, 16\)", error)  # the shapes, checkpoint vs code


def test_checkpoint_missing_a_weight_is_logged(tiny_model, tiny_corpus, tmp_path, caplog):
    """transformers would initialise it at random without a word; the user must hear of it."""
    checkpoint = tmp_path / "partial"
    shutil.copytree(tiny_model / "checkpoint-best", checkpoint)
    weights = load_file(str(checkpoint / "model.safetensors"))
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, str(checkpoint / "model.safetensors"),
              metadata={"format": "pt"})
    caplog.set_level(logging.WARNING, logger="signt5")
    assert _infer(checkpoint, tiny_corpus / "data.pkl", "--sample_id", "ase-test-00000") == 0
    assert any(f"no saved weights for {dropped}" in r.getMessage() for r in caplog.records)


def test_pose_file_with_another_keypoint_layout(tiny_model, tmp_path, capsys):
    pose = fake_pose(30, components=layout_by_name("openpose_137").to_pose_header().components)
    buffer = io.BytesIO()
    pose.write(buffer)
    path = tmp_path / "openpose.pose"
    path.write_bytes(buffer.getvalue())
    capsys.readouterr()
    assert _infer(tiny_model, path) == 2
    error = _one_line_error(capsys)
    assert str(path) in error and "keypoint layout 'openpose_137'" in error and "trained on 84" in error


def test_missing_input_and_unknown_sign_language(tiny_model, tiny_corpus, tmp_path, capsys):
    capsys.readouterr()
    assert _infer(tiny_model, tmp_path / "absent.pose") == 2
    assert "absent.pose: file not found" in _one_line_error(capsys)
    assert _infer(tiny_model, tmp_path / "absent.pkl", "--sample_id", "x") == 2
    assert "absent.pkl: file not found" in _one_line_error(capsys)
    assert _infer(tiny_model, tiny_corpus / "poses" / "test" / "ase-test-00000.pose", "--sign_language", "asl") == 2
    error = _one_line_error(capsys)
    assert "'asl' is not one this model was trained on" in error and "ase, ukl" in error


def test_visualize_shows_the_models_prediction(speaking_model, tiny_corpus, predictor, tmp_path, capsys):
    """``visualize --model_dir`` puts the model's own prediction for the sample into the player."""
    pkl = tiny_corpus / "data.pkl"
    sample_id = "ase-test-00000"
    out = tmp_path / "player.html"
    assert main(["visualize", "--input_file", str(pkl), "--sample_id", sample_id, "--model_dir", str(speaking_model),
                 "--output", str(out)]) == 0
    expected = _spoken(predictor.predict_samples([load_sample(pkl, sample_id)]))[0]
    page = out.read_text()
    # without --model_dir the embedded prediction is null; with it, exactly the model's text
    assert '"prediction":' + json.dumps(expected, ensure_ascii=False) in page


def test_input_is_read_before_the_model_loads(tiny_corpus, tmp_path, capsys, monkeypatch):
    """A mistyped sample id is reported without paying for (or failing on) the model load."""
    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was read")

    monkeypatch.setattr(Predictor, "load", classmethod(no_load))
    capsys.readouterr()
    assert main(["infer", "--model_dir", str(tmp_path / "no-model"), "--input_file", str(tiny_corpus / "data.pkl"),
                 "--sample_id", "ase-tset-00001"]) == 2
    assert "no sample 'ase-tset-00001'" in _one_line_error(capsys)


# --- long samples: data.max_frames with long_samples crop or window --------------------------------------------

@pytest.fixture(scope="module")
def speller(predictor) -> Predictor:
    """The speaking model: the 2-step model would decode every window to "" and make any joining look right;
    this one gives each window its own non-empty text."""
    return predictor


def _windowed(predictor: Predictor, max_frames: int) -> Predictor:
    """A second predictor on the same model, windowing at ``max_frames`` (the shared fixture stays as it is)."""
    windowed = Predictor(predictor.model, predictor.tokenizer, predictor.model_dir)
    windowed.override_data(max_frames=max_frames, long_samples="window")
    return windowed


def test_window_mode_joins_the_texts_of_each_window(tiny_corpus, speller, caplog):
    sample = load_sample(tiny_corpus / "data.pkl", "ase-test-00001")
    assert speller.data_config.max_frames is None
    whole = speller.prepare(sample)
    frames = whole["pose"].shape[0]
    windows = [{**whole, "pose": whole["pose"][a:a + 8], "mask": whole["mask"][a:a + 8]} for a in range(0, frames, 8)]
    texts = speller.predict_items(windows, decoding="ctc")[0]
    assert len(windows) == -(-frames // 8) > 2 and all(texts)
    caplog.set_level(logging.WARNING, logger="signt5")
    got = _windowed(speller, 8).predict_samples([sample], decoding="ctc")
    assert got == [" ".join(texts)] != speller.predict_samples([sample], decoding="ctc")
    warnings = [r.getMessage() for r in caplog.records if "windows" in r.getMessage()]
    assert warnings == [f"sample ase-test-00001 ({tiny_corpus / 'data.pkl'}): {frames} frames split into "
                        f"{len(windows)} windows of at most 8 (data.long_samples=window); their texts are joined"]


def test_window_mode_keeps_order_across_a_batch_and_leaves_short_samples_alone(tiny_corpus, speller, caplog):
    samples = list(read_samples(tiny_corpus / "data.pkl").values())[:5]
    windowed = _windowed(speller, 12)
    one_by_one = [windowed.predict_samples([s], decoding="ctc")[0] for s in samples]
    assert windowed.predict_samples(samples, batch_size=3, decoding="ctc") == one_by_one
    caplog.clear()
    assert (_windowed(speller, 10_000).predict_samples(samples, decoding="ctc")
            == speller.predict_samples(samples, decoding="ctc"))
    assert not [r for r in caplog.records if "windows" in r.getMessage()]


def test_cli_max_frames_and_long_samples_reach_the_predictor(speaking_model, tiny_corpus, predictor, capsys, caplog):
    pkl, sample_id = tiny_corpus / "data.pkl", "ase-test-00001"
    sample = load_sample(pkl, sample_id)
    capsys.readouterr()
    caplog.set_level(logging.INFO, logger="signt5")
    assert _infer(speaking_model, pkl, "--sample_id", sample_id, "--max_frames", "8", "--long_samples", "window") == 0
    windowed = _spoken(_windowed(predictor, 8).predict_samples([sample]))
    assert _lines(capsys.readouterr().out) == windowed != predictor.predict_samples([sample])
    messages = [r.getMessage() for r in caplog.records]
    assert any("max_frames=8 (checkpoint: None)" in m and "long_samples='window'" in m for m in messages)
    assert any(f"sample {sample_id}" in m and "windows of at most 8" in m for m in messages)
    caplog.clear()
    assert _infer(speaking_model, pkl, "--sample_id", sample_id, "--max_frames", "8") == 0  # the checkpoint's crop
    assert any(f"{pkl}" in m and "cropped to the centre 8" in m for m in (r.getMessage() for r in caplog.records))
    with pytest.raises(SystemExit):
        _infer(speaking_model, pkl, "--sample_id", sample_id, "--long_samples", "slide")
    assert "invalid choice: 'slide'" in capsys.readouterr().err
