"""The CLI in process: the data commands, and bad input as one clear line with a non-zero exit."""

from __future__ import annotations

from signt5.cli import main


def test_build_and_summarise(tmp_path, capsys):
    out = tmp_path / "fs"
    assert main(["build-fingerspelling", "--output_dir", str(out), "--sign_languages", "ase", "ukl",
                 "--train_words", "3", "--dev_words", "1", "--test_words", "1", "--test_shifted_words", "1",
                 "--test_slow_words", "1", "--test_fast_words", "1", "--test_flicker_words", "1",
                 "--test_left_handed_words", "0", "--formats", "pose"]) == 0
    assert "built 18 samples" in capsys.readouterr().out
    assert not (out / "data.pkl").exists()
    assert main(["data-summary", "--manifest", str(out / "manifest.csv")]) == 0
    text = capsys.readouterr().out
    assert "samples: 18" in text and "sign languages: 2" in text and "unreadable samples: 0" in text
    assert "test_fast 2" in text and "test_left_handed" not in text


def test_summary_lists_broken_samples(tmp_path, capsys, real_clip_path):
    (tmp_path / "ok.pose").write_bytes(real_clip_path.read_bytes())
    (tmp_path / "bad.pose").write_bytes(real_clip_path.read_bytes()[:500])
    (tmp_path / "m.csv").write_text("id,path,text\nok,ok.pose,a\nbad,bad.pose,b\n")
    assert main(["data-summary", "--manifest", str(tmp_path / "m.csv")]) == 0
    text = capsys.readouterr().out
    assert "samples: 1" in text and "unreadable samples: 1" in text and "bad.pose" in text


def test_missing_manifest_is_one_line_error(tmp_path, capsys):
    assert main(["data-summary", "--manifest", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "nope.csv" in err and "Traceback" not in err
