"""A variant of stage 2's decoder phase on a finished run's frozen encoder, through the library's own code.

A fresh decoder (the run's model config, with ``--model`` overrides) is trained as ``signt5 train --decoder_steps``
trains it (``cache_encoder_outputs`` then ``train_decoder``, the run's train config with ``--train`` overrides),
then scored on dev and test by the trainer's dev evaluation (attention, joint, CTC). One line of JSON per split.
``--time_steps N`` instead times N decoder steps on one cached pass (the phase's speed, not its quality).

    python benchmarks/decoder_phase_variants.py --model_dir output/sign_language_model --threads 1
    python benchmarks/decoder_phase_variants.py --model '{"memory_spelling": true}' --train '{"seed": 1}'
    python benchmarks/decoder_phase_variants.py --time_steps 400 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.data.cache import PreparedDataset, prepare_all, training_data_config  # noqa: E402
from signt5.data.manifest import read_manifest  # noqa: E402
from signt5.data.sampler import BucketBatchSampler  # noqa: E402
from signt5.models.configuration import SignT5Config  # noqa: E402
from signt5.models.loading import load_run_model  # noqa: E402
from signt5.models.modeling import SignT5ForConditionalGeneration  # noqa: E402
from signt5.training.config import TrainConfig  # noqa: E402
from signt5.training.decoder_phase import ENCODER_PREFIXES, cache_encoder_outputs, train_decoder  # noqa: E402
from signt5.training.distributed import Distributed  # noqa: E402
from signt5.training.recipes import GenerationRecipe  # noqa: E402


def fresh_decoder(trained: SignT5ForConditionalGeneration, overrides: dict) -> SignT5ForConditionalGeneration:
    """The trained run's model config with ``overrides`` (``text_config.x`` reaches the UMT5 config), a new
    decoder at seed 0, and the run's pose encoder and CTC head."""
    fields = trained.config.to_dict()
    fields.pop("transformers_version", None)
    for key, value in overrides.items():
        if key.startswith("text_config."):
            fields["text_config"][key.split(".", 1)[1]] = value
        else:
            fields[key] = value
    torch.manual_seed(0)
    model = SignT5ForConditionalGeneration(SignT5Config(**fields))
    model.load_state_dict({k: v for k, v in trained.state_dict().items() if k.startswith(ENCODER_PREFIXES)},
                          strict=False)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="output/sign_language_model", help="a stage-2 run folder")
    parser.add_argument("--model", default="{}", help="JSON: model config fields to change")
    parser.add_argument("--train", default="{}", help="JSON: train config fields to change (seed, decoder_passes...)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time_steps", type=int, default=0, help="time this many steps on one pass instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.model_dir)
    trained, tokenizer = load_run_model(run / "checkpoint-best")
    model = fresh_decoder(trained, json.loads(args.model)) if not args.time_steps else trained
    config = TrainConfig.load(run / "train_config.json")
    for key, value in json.loads(args.train).items():
        setattr(config, key, value)
    if args.time_steps:
        config.decoder_passes, config.decoder_steps = 1, args.time_steps
    manifest = Path(config.manifest) if Path(config.manifest).is_absolute() else ROOT / config.manifest
    entries = read_manifest(manifest)
    data_config = training_data_config(config.data)
    cache = manifest.parent / ".signt5-cache"
    train = prepare_all([e for e in entries if e.split == "train"], data_config, cache)
    dataset = PreparedDataset(train, config.target, config.augment, config.seed)
    sampler = BucketBatchSampler(train.lengths(), config.batch_size, shuffle=True, seed=config.seed)
    env = Distributed()
    started = time.perf_counter()
    batches = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, env.device, first_epoch=config.epochs,
                                    frame_multiple=32)
    cached = time.perf_counter()
    loss = train_decoder(model, batches, config, env)
    trained_s = time.perf_counter() - cached
    if args.time_steps:
        print(json.dumps({"steps": args.time_steps, "seconds": round(trained_s, 1),
                          "steps_per_second": round(args.time_steps / trained_s, 2)}))
        return 0
    for split in ("dev", "test"):
        samples = prepare_all([e for e in entries if e.split == split], data_config, cache)
        result = GenerationRecipe().evaluate_dev(model, tokenizer, samples, config, env.device)
        print(json.dumps({"split": split, "model": json.loads(args.model), "train": json.loads(args.train),
                          "loss": round(loss, 4), "cache_s": round(cached - started, 1), "train_s": round(trained_s, 1),
                          **{k: round(v, 3) for k, v in result.metrics.items() if k.startswith("cer")}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
