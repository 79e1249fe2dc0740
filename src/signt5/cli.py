"""The ``signt5`` command line. Library code never parses argv or prints; this module does both.

``main(argv)`` returns an exit code, so tests call it in process.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from .errors import SignT5Error

logger = logging.getLogger("signt5")


def _add_build_fingerspelling(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-fingerspelling", help="build the fingerspelling corpus from spoken-to-signed's lexicon")
    p.add_argument("--output_dir", default="data/fingerspelling")
    p.add_argument("--sign_languages", nargs="*", default=None, help="ISO 639-3 codes (default: all 19)")
    p.add_argument("--train_words", type=int, default=100, help="words per sign language")
    p.add_argument("--dev_words", type=int, default=10)
    p.add_argument("--test_words", type=int, default=10)
    p.add_argument("--test_shifted_words", type=int, default=10)
    for split, what in (("test_slow", "about 1 letter/s"), ("test_fast", "about 6 letters/s"),
                        ("test_flicker", "hands lost for 1-3 frames"), ("test_left_handed", "the signer mirrored")):
        p.add_argument(f"--{split}_words", type=int, default=10, help=f"stress split, {what} (0: leave it out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multi_word_share", type=float, default=0.25,
                   help="share of each split spelled as multi-word names (first + last name, place names)")
    p.add_argument("--layout", default="holistic_reduced_178", choices=["holistic_reduced_178", "holistic_586"])
    p.add_argument("--formats", nargs="+", default=["pose", "pkl"], choices=["pose", "pkl"])
    p.set_defaults(func=_run_build_fingerspelling)


def _run_build_fingerspelling(args: argparse.Namespace) -> int:
    from .data.fingerspelling import CorpusConfig, build_corpus

    config = CorpusConfig(
        output_dir=args.output_dir, sign_languages=args.sign_languages, train_words=args.train_words,
        dev_words=args.dev_words, test_words=args.test_words, test_shifted_words=args.test_shifted_words,
        test_slow_words=args.test_slow_words, test_fast_words=args.test_fast_words,
        test_flicker_words=args.test_flicker_words, test_left_handed_words=args.test_left_handed_words,
        seed=args.seed, multi_word_share=args.multi_word_share, layout=args.layout, formats=args.formats,
    )
    entries = build_corpus(config)
    splits = Counter(e.split for e in entries)
    print(f"built {len(entries)} samples in {args.output_dir}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    return 0


def _add_data_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data-summary", help="read every sample of a manifest and summarise it")
    p.add_argument("--manifest", default="data/fingerspelling/manifest.csv")
    p.add_argument("--split", default=None)
    p.set_defaults(func=_run_data_summary)


def _run_data_summary(args: argparse.Namespace) -> int:
    from .data.summary import summarize_manifest

    print(summarize_manifest(args.manifest, split=args.split).to_text())
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model on a manifest split: BLEU, chrF, ROUGE-L, WER, CER, exact match")
    p.add_argument("--model_dir", default="output/sign_language_model", help="run folder or checkpoint folder")
    p.add_argument("--data_dir", default=None, help="folder holding manifest.csv")
    p.add_argument("--manifest", default=None, help="manifest CSV/JSONL (default: data/fingerspelling/manifest.csv)")
    p.add_argument("--split", default="test",
                   help="split to score; several as a comma-separated list or shell patterns ('test*'), scored "
                        "one by one with a table of all; 'all' scores every row as one")
    p.add_argument("--target", choices=["gloss", "text"], default=None, help="default: what the model learned")
    p.add_argument("--output_file", default="evaluation_results.txt")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--num_beams", type=int, default=1)
    p.add_argument("--max_samples", type=int, default=None)
    _add_decoding(p)
    _add_data_overrides(p)
    p.set_defaults(func=_run_evaluate)


def _weight(value: str) -> float:
    weight = float(value)
    if not 0.0 <= weight <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {weight}")
    return weight


def _add_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoding", choices=["attention", "ctc", "joint"], default=None,
                   help="attention: the decoder (greedy or --num_beams); ctc: greedy CTC on the encoder; joint: the "
                        "decoder's hypotheses rescored by CTC prefix scores (ESPnet's joint decoding); default: the "
                        "one the checkpoint chose on dev")
    p.add_argument("--joint_ctc_weight", "--ctc_weight_decoding", dest="joint_ctc_weight", type=_weight, default=None,
                   help="joint decoding's CTC weight w: score = (1 - w) log P_decoder + w log P_ctc (default: the "
                        "checkpoint's, else 0.5; 0 = attention alone)")


def _int_at_least(minimum: int, zero_means: str = ""):
    """An argparse type: a whole number of at least ``minimum`` (``zero_means`` says what 0 does, if allowed)."""
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum}{zero_means} or more, got {number}")
        return number
    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def _add_data_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max_frames", type=_int_at_least(0, " (no limit)"), default=None,
                   help="longest model input, in frames after resampling to the model's frame rate; overrides "
                        "the checkpoint's data.max_frames for this call (0: no limit)")
    p.add_argument("--long_samples", choices=["crop", "window"], default=None,
                   help="a sample longer than max_frames: 'crop' keeps its centre; 'window' decodes consecutive "
                        "windows of max_frames frames and joins their texts with a space (default: the "
                        "checkpoint's data.long_samples, usually crop); both warn")
    p.add_argument("--handedness", choices=["right", "keep"], default=None,
                   help="'right' mirrors left-handed signing into the right-handed frame, 'keep' leaves it "
                        "(default: the checkpoint's data.handedness)")
    p.add_argument("--fill_hand_gaps", type=_int_at_least(0, " (off)"), default=None,
                   help="fill a hand missing for at most this many frames (0: off; default: the checkpoint's)")
    p.add_argument("--rate_band", type=_rate_band, default=None,
                   help="resample a sample whose letters per second are off the training data's by more than this "
                        "factor to that rate before decoding (0: off; default: the checkpoint's, 2)")


def _rate_band(value: str) -> float:
    """``--rate_band``: 0 (off) or a factor above 1 (a band of 1 or less would resample nothing or everything)."""
    band = float(value)
    if band != 0 and not band > 1:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or above 1, got {value}")
    return band


def _load_predictor(args: argparse.Namespace):
    """The model of ``--model_dir`` with the data overrides (``--max_frames``, ``--handedness``...) applied."""
    from .decoding.predictor import Predictor

    predictor = Predictor.load(args.model_dir)
    changes: dict = {}
    if args.max_frames is not None:
        changes["max_frames"] = args.max_frames or None
    for name in ("long_samples", "handedness", "fill_hand_gaps"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if changes:
        predictor.override_data(**changes)
    if args.rate_band is not None:
        predictor.rate_band = args.rate_band
    return predictor


def _manifest_arg(args: argparse.Namespace) -> str:
    if args.manifest:
        return args.manifest
    return str(Path(args.data_dir or "data/fingerspelling") / "manifest.csv")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate_model, expand_splits, split_output_file, splits_table, write_results

    manifest = _manifest_arg(args)
    splits = expand_splits(manifest, args.split)  # a wrong split name fails before the model loads
    predictor = _load_predictor(args)
    results, paths = [], []
    for split in splits:
        result = evaluate_model(args.model_dir, manifest, split, args.target, args.batch_size, args.num_beams,
                                args.max_samples, predictor=predictor, decoding=args.decoding,
                                ctc_weight=args.joint_ctc_weight)
        paths += write_results(result, split_output_file(args.output_file, split, len(splits) > 1))
        results.append(result)
        print(result.to_text() + "\n")
    if len(results) > 1:
        print(splits_table(results) + "\n")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="translate one sample, every sample of a file, a video, or a folder of .pose "
                                     "files or videos")
    p.add_argument("--model_dir", default="output/sign_language_model", help="run folder or checkpoint folder")
    p.add_argument("--input_file", required=True, help=".pose, data.pkl, .npz/.npy, a video, or a folder")
    p.add_argument("--sample_id", default=None, help="one sample of a data.pkl/.npz")
    p.add_argument("--sign_language", default=None, help="ISO 639-3 code, e.g. ase (default: the sample's own)")
    p.add_argument("--num_beams", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    p.add_argument("--save_pose", default=None, metavar="DIR",
                   help="keep the videos' .pose files (and a manifest) in this folder")
    p.add_argument("--workers", type=_int_at_least(1), default=1,
                   help="processes estimating poses of a folder of videos")
    _add_holistic_model(p)
    _add_decoding(p)
    _add_data_overrides(p)
    p.set_defaults(func=_run_infer)


def _run_infer(args: argparse.Namespace) -> int:
    import json
    import time

    from .inference import collect_inputs, predict_files

    start = time.perf_counter()
    # a wrong path or id fails before the model loads; videos go through pose estimation first
    samples, failed = collect_inputs(args.input_file, args.sample_id, args.save_pose, args.workers,
                                     args.holistic_model)
    read = time.perf_counter() - start
    start = time.perf_counter()
    predictor = _load_predictor(args)
    loaded = time.perf_counter() - start
    predictions, timing = predict_files(predictor, args.input_file, args.sample_id, args.sign_language,
                                        args.num_beams, args.batch_size, args.decoding, samples=samples,
                                        ctc_weight=args.joint_ctc_weight)
    for p in predictions:
        if args.json:
            print(json.dumps({"id": p.sample_id, "text": p.text, "sign_language": p.sign_language,
                              "source": p.source}, ensure_ascii=False))
        else:
            print(f"{p.sample_id}\t{p.text}" if len(predictions) > 1 else p.text)
    logger.info("model loaded in %.2f s; %d sample(s) read in %.2f s, predicted in %.2f s", loaded,
                len(predictions), read, timing["predict_seconds"])
    if failed:
        print(f"{len(failed)} video(s) failed:\n  " + "\n  ".join(failed.values()), file=sys.stderr)
        return 2
    return 0


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="HTML player, PNG grid, GIF or MP4 of one pose sample or video")
    p.add_argument("--input_file", required=True,
                   help=".pose, data.pkl, .npz, or a video (its poses are estimated; the player shows its frames)")
    p.add_argument("--sample_id", default=None, help="sample of a data.pkl/.npz (needed when it holds several)")
    p.add_argument("--output", default=None, help="output path (default: <sample_id>.<format>)")
    p.add_argument("--format", choices=["html", "png", "gif", "mp4"], default=None,
                   help="default: --output's suffix, else html")
    p.add_argument("--model_dir", default=None, help="show this model's prediction in the player")
    p.add_argument("--label", default=None, help="reference text to show (default: the sample's own label)")
    p.add_argument("--fit", choices=["auto", "points", "frame"], default="auto")
    p.add_argument("--fps", type=float, default=None, help="GIF/MP4 frame rate (default: the clip's)")
    p.add_argument("--hide", nargs="*", default=[], choices=["face", "body", "left_hand", "right_hand", "other"])
    _add_holistic_model(p)
    p.set_defaults(func=_run_visualize)


def _run_visualize(args: argparse.Namespace) -> int:
    from .data.video import is_video, video_samples
    from .visualize import load_sample, output_format, render

    video = args.input_file if is_video(args.input_file) else None
    if video:
        sample = video_samples(video, holistic_model=args.holistic_model)[0][0]
    else:
        sample = load_sample(args.input_file, args.sample_id)
    fmt = args.format or (output_format(args.output) if args.output else "html")
    prediction = _predict_for_visualize(args.model_dir, sample) if args.model_dir else None
    out = render(sample, args.output or f"{sample.sample_id}.{fmt}", fmt, label=args.label, prediction=prediction,
                 fit=args.fit, fps=args.fps, hide=args.hide, video=video)
    print(out)
    return 0


def _predict_for_visualize(model_dir: str, sample) -> str:
    from .decoding.predictor import Predictor

    return Predictor.load(model_dir).predict_samples([sample])[0]


def _add_holistic_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--holistic_model", default=None, metavar="FILE",
                   help="a MediaPipe HolisticLandmarker .task file, run with the Tasks API (needed with mediapipe "
                        ">= 0.10.30); default: the Holistic models inside mediapipe 0.10.21")


def _add_pose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pose", help="MediaPipe Holistic poses of a video or a folder of videos: .pose files + manifest")
    p.add_argument("input", help="a video file, or a folder of videos (subfolders included)")
    p.add_argument("--output_dir", required=True, help="where the .pose files and manifest.csv go")
    p.add_argument("--workers", type=_int_at_least(1), default=1, help="parallel processes, each about one CPU core")
    p.add_argument("--overwrite", action="store_true", help="redo videos whose .pose file exists (default: skip)")
    p.add_argument("--sign_language", default="", help="ISO 639-3 code for the manifest's new rows, e.g. ase")
    _add_holistic_model(p)
    p.set_defaults(func=_run_pose)


def _run_pose(args: argparse.Namespace) -> int:
    from .data.video import extract_videos

    summary = extract_videos(args.input, args.output_dir, args.workers, args.holistic_model, args.overwrite,
                             sign_language=args.sign_language)
    print(summary.to_text())
    return 2 if summary.failed else 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch UMT5 and/or a data set from the Hugging Face hub, or install local copies")
    p.add_argument("--dataset_repo_id", default=None, help="USER/NAME of a dataset repo")
    p.add_argument("--model_repo_id", default="google/umt5-small")
    p.add_argument("--local_path", default=None, help="data set folder, manifest or data.pkl already on disk")
    p.add_argument("--local_model_path", default=None, help="model folder already on disk")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--model_dir", default="models/umt5")
    p.add_argument("--revision", default=None, help="data set revision")
    p.add_argument("--model_revision", default=None)
    p.add_argument("--skip_model", action="store_true", help="only the data set")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    from .resources import download_dataset, download_model

    if not args.skip_model:
        path = download_model(args.model_repo_id, args.model_dir, args.model_revision, args.local_model_path,
                              overwrite=args.overwrite)
        print(f"model: {path}")
    if args.dataset_repo_id or args.local_path:
        path = download_dataset(args.dataset_repo_id, args.data_dir, args.revision, args.local_path,
                                overwrite=args.overwrite)
        print(f"data: {path}")
    return 0


def _add_train_args(p: argparse.ArgumentParser, stage: str) -> None:
    from .training.config import TrainConfig

    d = TrainConfig(stage=stage)
    p.add_argument("--config", default=None, help="a train_config.json to start from (flags override it)")
    p.add_argument("--data_dir", default=None, help="folder holding manifest.csv (default: data/fingerspelling)")
    p.add_argument("--manifest", default=None, help=f"manifest CSV/JSONL (default: {d.manifest})")
    p.add_argument("--output_dir", default=None)
    p.add_argument("--pose_config", default=None, help=f"pose encoder JSON (default: {d.pose_config})")
    p.add_argument("--text_config", default=None, help="UMT5 preset (tiny, cpu) or JSON, without pretrained weights")
    p.add_argument("--umt5_dir", default=None, help=f"local pretrained UMT5, used when present (default: {d.umt5_dir})")
    p.add_argument("--target", choices=["gloss", "text"], default=None, help="label column to learn (default: gloss)")
    for name, kind in (("epochs", int), ("batch_size", int), ("lr", float), ("seed", int), ("max_steps", int),
                       ("stop_after_steps", int), ("grad_accum", int), ("num_workers", int), ("patience", int),
                       ("save_every_steps", int), ("max_eval_samples", int), ("weight_decay", float),
                       ("warmup_ratio", float), ("eval_every_epochs", int), ("ctc_weight", float),
                       ("guided_attention_weight", float), ("decoder_gradient_to_encoder", float)):
        p.add_argument(f"--{name}", type=kind, default=None)
    p.add_argument("--max_batch_frames", type=int, default=None,
                   help="run a batch of more padded frames (samples x longest) in parts whose gradients add up, to "
                        "bound memory; 0: never (default: %d; one process only)" % d.max_batch_frames)
    p.add_argument("--ctc_classes", choices=["letters", "tokens"], default=None,
                   help="stage 2 CTC classes: one per letter of each sign language (gloss target) or token ids")
    p.add_argument("--positions", choices=["ctc", "both_ends", "sinusoidal", "none"], default=None,
                   help="absolute positions for the decoder: counted in CTC emissions on its memory and in letters "
                        "written on its inputs (ctc), in frames from both ends of the memory (both_ends) or from "
                        "its start (sinusoidal), or none (default: %s)" % d.positions)
    p.add_argument("--decoder_memory", choices=["frames", "ctc_segments"], default=None,
                   help="what the decoder's cross-attention reads: the encoder frames, or one vector per run of "
                        "frames the CTC head labels alike (default: %s)" % d.decoder_memory)
    p.add_argument("--guided_attention", choices=["ctc", "diagonal"], default=None,
                   help="where guided attention (--guided_attention_weight) sends each target token: the frames "
                        "the CTC head aligns it to (ctc), or near the diagonal (default: %s)" % d.guided_attention)
    p.add_argument("--letter_tokens", action=argparse.BooleanOptionalAction, default=None,
                   help="stage 2, gloss target: one decoder token per letter of several bytes (SCH, Š, Ω) instead of "
                        "its bytes (default: %s)" % ("on" if d.letter_tokens else "off"))
    p.add_argument("--memory_spelling", action=argparse.BooleanOptionalAction, default=None,
                   help="add to the decoder's memory the CTC head's reading, spelled in the decoder's own token "
                        "embeddings (default: %s)" % ("on" if d.memory_spelling else "off"))
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint-last")
    p.add_argument("--no_augment", action="store_true", help="switch off on-the-fly augmentation")
    p.add_argument("--augment_speed", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="time-stretch range of augmentation, >1 faster (default: %s, on a log scale: about "
                        "1.3-7 letters/s on the fingerspelling corpus)" % (d.augment.speed,))
    p.add_argument("--augment_speed_scale", choices=["linear", "log"], default=None,
                   help="draw the time-stretch factor uniformly on a linear or a log scale (default: %s)"
                        % d.augment.speed_scale)
    p.add_argument("--augment_speed_draw", choices=["bucketed", "batch", "sample"], default=None,
                   help="when the time-stretch factor is drawn: per sample before batching, batches grouped by the "
                        "stretched length (bucketed); one per batch; or per sample as it loads, which pads a batch "
                        "to its slowest draw (default: %s)" % d.augment.speed_draw)
    p.add_argument("--augment_flicker", type=float, default=None,
                   help="chance per hand per frame that augmentation loses it for 1-3 frames (default: %s)"
                        % d.augment.flicker)
    p.add_argument("--no_sign_language", action="store_true", help="no sign-language conditioning")


def _train_config(args: argparse.Namespace, stage: str, default_output: str):
    from .training.config import TrainConfig

    base = TrainConfig.load(args.config).to_dict() if args.config else {"output_dir": default_output}
    base["stage"] = stage
    if args.data_dir or args.manifest:
        base["manifest"] = _manifest_arg(args)
    for name in ("output_dir", "pose_config", "text_config", "umt5_dir", "target", "epochs",
                 "batch_size", "lr", "seed", "max_steps", "stop_after_steps", "grad_accum", "max_batch_frames",
                 "num_workers",
                 "patience", "save_every_steps", "max_eval_samples", "weight_decay", "warmup_ratio",
                 "eval_every_epochs", "ctc_weight", "ctc_classes", "decoder_memory", "positions",
                 "guided_attention_weight", "guided_attention", "decoder_gradient_to_encoder", "memory_spelling",
                 "letter_tokens", "decoder_steps", "decoder_lr", "decoder_passes"):
        value = getattr(args, name, None)
        if value is not None:
            base[name] = value
    if args.resume:
        base["resume"] = True
    if args.no_sign_language:
        base["sign_language_conditioning"] = False
    config = TrainConfig.from_dict(base)
    if args.no_augment:
        config.augment.enabled = False
    if args.augment_speed is not None:
        config.augment.speed = tuple(args.augment_speed)
    if args.augment_speed_scale is not None:
        config.augment.speed_scale = args.augment_speed_scale
    if args.augment_speed_draw is not None:
        config.augment.speed_draw = args.augment_speed_draw
    if args.augment_flicker is not None:
        config.augment.flicker = args.augment_flicker
    return config


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="stage 1: contrastive (InfoNCE) pre-training of the pose encoder")
    _add_train_args(p, "pretrain")
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from .training.trainer import train

    summary = train(_train_config(args, "pretrain", "output/pose_encoder_contrastive"))
    _print_summary(summary)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="stage 2: pose encoder + UMT5 decoder, sign-to-text generation")
    _add_train_args(p, "finetune")
    p.add_argument("--contrastive_model_dir", default=None, help="stage-1 run whose pose encoder to start from")
    p.add_argument("--decoder_stage_from", default=None,
                   help="a finished stage-2 run to continue with its pose encoder and CTC head frozen: the decoder "
                        "alone trains, on the encoder as it ended")
    p.add_argument("--decoder_steps", type=int, default=None,
                   help="two phases: the epochs train the pose encoder and CTC head, then the decoder trains this "
                        "many steps on the frozen encoder's cached outputs (default 0: both together)")
    p.add_argument("--decoder_lr", type=float, default=None, help="the decoder phase's peak learning rate (default: --lr)")
    p.add_argument("--decoder_passes", type=int, default=None,
                   help="augmented passes over the training split cached for the decoder phase (default 5)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .training.trainer import train

    config = _train_config(args, "finetune", "output/sign_language_model")
    if args.contrastive_model_dir:
        config.init_from = args.contrastive_model_dir
    if args.decoder_stage_from:
        config.decoder_stage_from = args.decoder_stage_from
    _print_summary(train(config))
    return 0


def _print_summary(summary: dict) -> None:
    from .training.distributed import is_main_process

    if not is_main_process():
        return
    score = summary["best_score"]
    print(f"{summary['stage']}: {summary['steps']} steps, {summary['epochs']} epochs, stopped by "
          f"{summary['stopped']}; best dev score {'n/a' if score is None else f'{score:.2f}'}; "
          f"{summary['train_samples_per_second']:.1f} samples/s, "
          f"{100 * summary['data_wait_share']:.1f}% of step time waiting for data; saved in {summary['output_dir']}")
    skipped = summary["skipped_samples"]
    if skipped:
        print(f"{len(skipped)} unreadable sample(s) skipped (all listed in "
              f"{Path(summary['output_dir']) / 'train_summary.json'}):")
        for line in skipped[:20]:
            print(f"  {line}")
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signt5", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build_fingerspelling(sub)
    _add_data_summary(sub)
    _add_pose(sub)
    _add_pretrain(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_infer(sub)
    _add_visualize(sub)
    _add_download(sub)
    return parser


# Commands that load or save transformers models (visualize only with --model_dir).
_MODEL_COMMANDS = frozenset({"pretrain", "train", "evaluate", "infer", "visualize"})


def _quiet_libraries(verbose: bool) -> None:
    """Silence transformers' load reports and its "Loading weights"/"Writing model shards" bars, and the Hub's bars.

    They bury the lines a command prints. Our own training bar (plain tqdm) and our logging are untouched;
    ``-v`` brings transformers' warnings back. ``download`` is not quieted: it imports no transformers, and a
    download of hundreds of MB needs the Hub's progress bars.
    """
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    if verbose:
        hf_logging.set_verbosity_warning()
    else:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command in _MODEL_COMMANDS and (args.command != "visualize" or args.model_dir):
        _quiet_libraries(args.verbose)
    try:
        return args.func(args)
    except SignT5Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
