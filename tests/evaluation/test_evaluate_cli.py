"""`signt5 evaluate` in process on a tiny trained model: the result files, model folders, splits, beams, formats.

The model is trained for 2 steps, so its output is junk (mostly empty): these tests check the plumbing and, on
the ``speaking_model`` (conftest, a non-empty text of each sample's own), that every route to a hypothesis gives
the same one; not translation quality.
"""

from __future__ import annotations

import csv
import json
import logging

import pytest

from signt5.cli import main
from signt5.data.manifest import read_manifest
from signt5.data.readers import load_sample
from signt5.decoding.predictor import Predictor


def _evaluate(model_dir, manifest, output_file, *extra: str) -> int:
    return main(["evaluate", "--model_dir", str(model_dir), "--manifest", str(manifest),
                 "--output_file", str(output_file), *extra])


def _rows(output_file) -> list[dict]:
    with output_file.with_suffix(".csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_writes_text_json_and_csv(tiny_model, tiny_corpus, tmp_path, capsys):
    manifest = tiny_corpus / "manifest.csv"
    out = tmp_path / "res.txt"
    capsys.readouterr()
    assert _evaluate(tiny_model, manifest, out, "--split", "test") == 0
    printed = capsys.readouterr()

    text = out.read_text(encoding="utf-8")
    assert "bleu signature: nrefs:1" in text and "chrf signature:" in text and "samples/s" in text
    assert text.strip() in printed.out and "wrote " in printed.out
    assert "Loading weights" not in printed.err and "LOAD REPORT" not in printed.err  # transformers silenced

    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert result["model_dir"] == str(tiny_model / "checkpoint-best")  # a run folder means its best checkpoint
    assert result["count"] == 4 and result["split"] == "test" and result["target"] == "gloss"
    assert result["samples_per_second"] > 0
    metrics = result["metrics"]
    assert set(metrics["per_group"]) == {"ase", "ukl"} and metrics["group_counts"] == {"ase": 2, "ukl": 2}
    assert {"bleu4", "chrf", "wer", "cer", "exact_match"} <= set(metrics["overall"])
    assert metrics["signatures"]["bleu"].startswith("nrefs:1|")

    entries = read_manifest(manifest, split="test")
    rows = _rows(out)
    assert [r["id"] for r in rows] == [e.id for e in entries]
    assert [r["reference"] for r in rows] == [e.gloss for e in entries]
    assert [r["sign_language"] for r in rows] == [e.sign_language for e in entries]


def test_checkpoint_folder_all_splits_and_beams(tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "sub" / "all.txt"
    checkpoint = tiny_model / "checkpoint-last"
    assert _evaluate(checkpoint, tiny_corpus / "manifest.csv", out, "--split", "all", "--num_beams", "2",
                     "--batch_size", "5") == 0
    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert result["model_dir"] == str(checkpoint) and result["num_beams"] == 2 and result["split"] is None
    assert result["count"] == len(_rows(out)) == len(read_manifest(tiny_corpus / "manifest.csv"))
    assert "beams: 2" in out.read_text(encoding="utf-8")


def _spoken(texts: list[str]) -> list[str]:
    """Texts that tell two code paths apart: none empty, and not all the same."""
    assert all(texts) and len(set(texts)) > 1, texts
    return texts


def test_pkl_manifest_and_inference_give_the_same_hypotheses(speaking_model, tiny_corpus, tmp_path):
    """Evaluation reads through the sample cache; inference prepares each file itself: both must agree."""
    pose_out, pkl_out = tmp_path / "pose.txt", tmp_path / "pkl.txt"
    assert _evaluate(speaking_model, tiny_corpus / "manifest.csv", pose_out, "--split", "test_shifted") == 0
    assert _evaluate(speaking_model, tiny_corpus / "manifest_pkl.csv", pkl_out, "--split", "test_shifted") == 0
    pose_rows, pkl_rows = _rows(pose_out), _rows(pkl_out)
    assert pose_rows == pkl_rows and len(pose_rows) == 4

    entries = read_manifest(tiny_corpus / "manifest.csv", split="test_shifted")
    samples = [load_sample(e.path).replace(labels={"sign_language": e.sign_language}) for e in entries]
    expected = _spoken(Predictor.load(speaking_model).predict_samples(samples))
    assert [r["hypothesis"] for r in pose_rows] == expected


def test_bad_model_dir_and_split_are_one_line_errors(tiny_model, tiny_corpus, tmp_path, capsys):
    manifest = tiny_corpus / "manifest.csv"
    capsys.readouterr()
    assert _evaluate(tiny_corpus, manifest, tmp_path / "a.txt") == 2
    err = capsys.readouterr().err
    assert "is not a signt5 model" in err and "Traceback" not in err

    assert _evaluate(tiny_model, manifest, tmp_path / "b.txt", "--split", "tset") == 2
    err = capsys.readouterr().err
    assert "no samples in split 'tset'" in err and "Traceback" not in err
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists()


def test_max_frames_and_long_samples_override_the_checkpoint(speaking_model, tiny_corpus, tmp_path, caplog):
    """``--long_samples window`` decodes the evaluated samples in windows, exactly as inference does."""
    manifest, out = tiny_corpus / "manifest.csv", tmp_path / "windowed.txt"
    caplog.set_level(logging.INFO, logger="signt5")
    assert _evaluate(speaking_model, manifest, out, "--max_samples", "3", "--max_frames", "8",
                     "--long_samples", "window") == 0
    rows = _rows(out)
    windowed = [r.getMessage() for r in caplog.records if "windows of at most 8" in r.getMessage()]
    assert [m.split()[1].rstrip(":") for m in windowed] == [r["id"] for r in rows]  # one warning per sample, in order
    predictor = Predictor.load(speaking_model)
    samples = [load_sample(e.path).replace(labels={"sign_language": e.sign_language})
               for e in read_manifest(manifest, split="test")[:3]]
    whole = predictor.predict_samples(samples)
    predictor.override_data(max_frames=8, long_samples="window")
    windowed = _spoken(predictor.predict_samples(samples))
    assert [r["hypothesis"] for r in rows] == windowed != whole


def test_joint_decoding_flags_reach_evaluate_and_infer(tiny_model, tiny_corpus, tmp_path, capsys):
    """``--decoding joint --joint_ctc_weight W``: recorded in the results; weight 0 is attention decoding; infer
    gives what evaluate gives."""
    manifest = tiny_corpus / "manifest.csv"
    attention, zero, joint = tmp_path / "attention.txt", tmp_path / "zero.txt", tmp_path / "joint.txt"
    assert _evaluate(tiny_model, manifest, attention, "--decoding", "attention") == 0
    assert _evaluate(tiny_model, manifest, zero, "--decoding", "joint", "--joint_ctc_weight", "0") == 0
    assert _evaluate(tiny_model, manifest, joint, "--decoding", "joint", "--ctc_weight_decoding", "0.5") == 0
    assert [r["hypothesis"] for r in _rows(zero)] == [r["hypothesis"] for r in _rows(attention)]
    result = json.loads(joint.with_suffix(".json").read_text(encoding="utf-8"))
    assert result["decoding"] == "joint" and result["ctc_weight"] == 0.5
    assert "decoding: joint (CTC weight 0.5)" in joint.read_text(encoding="utf-8")
    first = _rows(joint)[0]
    capsys.readouterr()
    assert main(["infer", "--model_dir", str(tiny_model), "--input_file", str(tiny_corpus / "data.pkl"),
                 "--sample_id", first["id"], "--decoding", "joint", "--joint_ctc_weight", "0.5"]) == 0
    assert capsys.readouterr().out.strip() == first["hypothesis"]
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses a weight outside [0, 1]
        main(["evaluate", "--model_dir", str(tiny_model), "--decoding", "joint", "--joint_ctc_weight", "2"])
    assert exit_info.value.code == 2 and "must lie in [0, 1]" in capsys.readouterr().err


def test_several_splits_give_a_file_each_and_one_table(tiny_model, tiny_corpus, tmp_path, capsys):
    """``--split 'test*'`` scores test and test_shifted one by one (the same hypotheses as alone) and tabulates
    them; a pattern that matches nothing is refused before the model loads."""
    manifest = tiny_corpus / "manifest.csv"
    capsys.readouterr()
    assert _evaluate(tiny_model, manifest, tmp_path / "res.txt", "--split", "test*") == 0
    printed = capsys.readouterr().out
    table = printed[printed.rindex("\ndecoding:") + 1:]
    rows = [line.split()[0] for line in table.splitlines()[2:] if line.strip() and not line.startswith("wrote")]
    assert rows == ["test", "test_shifted"]
    assert _evaluate(tiny_model, manifest, tmp_path / "alone.txt", "--split", "test_shifted") == 0
    assert _rows(tmp_path / "res_test_shifted.txt") == _rows(tmp_path / "alone.txt")
    assert json.loads((tmp_path / "res_test.json").read_text())["split"] == "test"
    assert _evaluate(tiny_model, manifest, tmp_path / "x.txt", "--split", "nope*") != 0
    assert "no split matches 'nope*'" in capsys.readouterr().err
