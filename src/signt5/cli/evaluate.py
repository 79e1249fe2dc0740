"""``signt5`` commands that run a trained model on samples: ``evaluate`` scores a manifest split, ``infer``
translates files, videos or folders."""

from __future__ import annotations

import argparse
import logging
import sys

from .common import add_data_overrides, add_decoding, add_holistic_model, int_at_least, load_predictor, manifest_arg

logger = logging.getLogger("signt5")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The model commands, in the order ``signt5 --help`` lists them."""
    _add_evaluate(sub)
    _add_infer(sub)


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
    add_decoding(p)
    add_data_overrides(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from signt5.evaluation.evaluate import evaluate_model, expand_splits, split_output_file, splits_table, write_results

    manifest = manifest_arg(args)
    splits = expand_splits(manifest, args.split)  # a wrong split name fails before the model loads
    predictor = load_predictor(args)
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
    p.add_argument("--workers", type=int_at_least(1), default=1,
                   help="processes estimating poses of a folder of videos")
    add_holistic_model(p)
    add_decoding(p)
    add_data_overrides(p)
    p.set_defaults(func=_run_infer)


def _run_infer(args: argparse.Namespace) -> int:
    import json
    import time

    from signt5.inference import collect_inputs, predict_files

    start = time.perf_counter()
    # a wrong path or id fails before the model loads; videos go through pose estimation first
    samples, failed = collect_inputs(args.input_file, args.sample_id, args.save_pose, args.workers,
                                     args.holistic_model)
    read = time.perf_counter() - start
    start = time.perf_counter()
    predictor = load_predictor(args)
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
