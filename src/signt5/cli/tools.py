"""``signt5`` tools around the models: ``visualize`` a pose sample or video, ``download`` UMT5 and data sets."""

from __future__ import annotations

import argparse

from .common import add_holistic_model


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The tool commands, in the order ``signt5 --help`` lists them."""
    _add_visualize(sub)
    _add_download(sub)


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
    add_holistic_model(p)
    p.set_defaults(func=_run_visualize)


def _run_visualize(args: argparse.Namespace) -> int:
    from signt5.data.video import is_video, video_samples
    from signt5.visualize import load_sample, output_format, render

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
    from signt5.decoding.predictor import Predictor

    return Predictor.load(model_dir).predict_samples([sample])[0]


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
    from signt5.resources import download_dataset, download_model

    if not args.skip_model:
        path = download_model(args.model_repo_id, args.model_dir, args.model_revision, args.local_model_path,
                              overwrite=args.overwrite)
        print(f"model: {path}")
    if args.dataset_repo_id or args.local_path:
        path = download_dataset(args.dataset_repo_id, args.data_dir, args.revision, args.local_path,
                                overwrite=args.overwrite)
        print(f"data: {path}")
    return 0
