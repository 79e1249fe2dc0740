"""``signt5`` training commands: stage 1 (``pretrain``) and stage 2 (``train``), their flags turned into a
``TrainConfig`` and the run's summary printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import manifest_arg


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The training commands, in the order ``signt5 --help`` lists them."""
    _add_pretrain(sub)
    _add_train(sub)


def _add_train_args(p: argparse.ArgumentParser, stage: str) -> None:
    from signt5.training.config import TrainConfig

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
    from signt5.training.config import TrainConfig

    base = TrainConfig.load(args.config).to_dict() if args.config else {"output_dir": default_output}
    base["stage"] = stage
    if args.data_dir or args.manifest:
        base["manifest"] = manifest_arg(args)
    for name in ("output_dir", "pose_config", "text_config", "umt5_dir", "target", "epochs",
                 "batch_size", "lr", "seed", "max_steps", "stop_after_steps", "grad_accum", "max_batch_frames",
                 "num_workers",
                 "patience", "save_every_steps", "max_eval_samples", "weight_decay", "warmup_ratio",
                 "eval_every_epochs", "ctc_weight", "ctc_classes", "decoder_memory", "positions",
                 "guided_attention_weight", "guided_attention", "decoder_gradient_to_encoder", "memory_spelling",
                 "letter_tokens", "decoder_steps", "decoder_lr", "decoder_passes", "decoder_splice",
                 "decoder_splice_pieces", "label_smoothing", "aligned_attention_slope"):
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
    from signt5.training.trainer import train

    summary = train(_train_config(args, "pretrain", "output/pose_encoder_contrastive"))
    _print_summary(summary)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from signt5.training.config import TrainConfig

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
    p.add_argument("--aligned_attention_slope", type=float, default=None,
                   help="with --positions ctc: the decoder's cross-attention logits lowered by this much per CTC "
                        "unit between a frame and the letter being written (default %g; 0: off)"
                        % TrainConfig.aligned_attention_slope)
    p.add_argument("--label_smoothing", type=float, default=None,
                   help="the decoder's cross-entropy against targets smoothed by this share (default 0)")
    p.add_argument("--decoder_splice", type=float, default=None,
                   help="share of the decoder phase's batches made of new words: two cached samples of one sign "
                        "language cut where their letters change and joined (gloss target; default 0.9)")
    p.add_argument("--decoder_splice_pieces", type=int, default=None,
                   help="cached words each spliced word is cut from: the first's first letters, a run of letters "
                        "of each next one, the last's last letters (default 2)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from signt5.training.trainer import train

    config = _train_config(args, "finetune", "output/sign_language_model")
    if args.contrastive_model_dir:
        config.init_from = args.contrastive_model_dir
    if args.decoder_stage_from:
        config.decoder_stage_from = args.decoder_stage_from
    _print_summary(train(config))
    return 0


def _print_summary(summary: dict) -> None:
    from signt5.training.distributed import is_main_process

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
