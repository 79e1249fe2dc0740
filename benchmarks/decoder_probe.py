"""How fast does a fresh decoder learn to read a trained pose encoder? The decoder probe.

A trained run's pose encoder and CTC head are frozen and their outputs cached over ``--passes`` augmented
passes of the training split; a new decoder (the run's config, with ``--set field=JSON`` overrides) trains
on the cache for ``--steps`` steps, the demo recipe's batch and learning rate. Every ``--eval_at`` step it
prints dev teacher-forced letter accuracy (overall and by the letter's index in the word) and greedy
attention-decoding CER. Minutes per variant where a full run takes 13, and the encoder is the same for all:
the decoder's share of the gap between attention and CTC decoding, measured alone.

    python benchmarks/decoder_probe.py --model_dir output/sign_language_model
    python benchmarks/decoder_probe.py --set 'positions="both_ends"'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.data.augment import AugmentConfig  # noqa: E402
from signt5.data.cache import PreparedDataset, prepare_all, training_data_config  # noqa: E402
from signt5.data.dataset import DataConfig, pad_batch  # noqa: E402
from signt5.data.manifest import read_manifest  # noqa: E402
from signt5.data.sampler import BucketBatchSampler  # noqa: E402
from signt5.decoding.generate import generate_texts  # noqa: E402
from signt5.decoding.metrics import compute_metrics  # noqa: E402
from signt5.models.configuration import SignT5Config  # noqa: E402
from signt5.models.encoder import PoseEncoderOutput  # noqa: E402
from signt5.models.labels import model_inputs  # noqa: E402
from signt5.models.loading import load_run_model  # noqa: E402
from signt5.models.modeling import SignT5ForConditionalGeneration  # noqa: E402
from signt5.models.text import BYTE_OFFSET, IGNORE_INDEX, add_letter_tokens, multi_byte_letters  # noqa: E402

INDEX_BUCKETS = ((0, 1), (1, 4), (4, 8), (8, 99))  # letter index in the word


def probe_model(model_dir: str, overrides: list[str]) -> tuple[SignT5ForConditionalGeneration, object]:
    """A new model with the run's config (plus overrides): the run's encoder and CTC head, frozen; a fresh decoder."""
    trained, tokenizer = load_run_model(model_dir)
    fields = trained.config.to_dict()
    for override in overrides:
        key, value = override.split("=", 1)
        fields[key] = json.loads(value)
    fields.pop("transformers_version", None)
    if fields.get("letter_tokens") is True:  # --set letter_tokens=true: the run's letters of several bytes
        fields["letter_tokens"] = multi_byte_letters(fields["ctc_units"])
        add_letter_tokens(tokenizer, fields["letter_tokens"])
        fields["text_config"] = {**fields["text_config"], "vocab_size": len(tokenizer)}
    model = SignT5ForConditionalGeneration(SignT5Config(**fields))
    kept = {k: v for k, v in trained.state_dict().items() if k.startswith(("encoder.", "ctc_head."))}
    model.load_state_dict(kept, strict=False)
    model.encoder.requires_grad_(False)
    if model.ctc_head is not None:
        model.ctc_head.requires_grad_(False)
    return model, tokenizer


@torch.no_grad()
def encode(model, tokenizer, items_per_batch: list[list[dict]]) -> list[tuple]:
    """(memory, its mask, sign-language ids, labels) per batch, from the frozen encoder."""
    model.eval()
    out = []
    for items in items_per_batch:
        inputs = model_inputs(pad_batch(items), model.config, tokenizer, "cpu", 64)
        encoded = model.encoder(inputs["pose"], inputs["point_mask"], inputs["frame_mask"],
                                inputs.get("sign_language_ids"))
        out.append((encoded.last_hidden_state, encoded.attention_mask, inputs.get("sign_language_ids"),
                    inputs["labels"]))
    return out


def forward(model, batch: tuple):
    hidden, mask, ids, labels = batch
    return model(encoder_outputs=PoseEncoderOutput(last_hidden_state=hidden, attention_mask=mask), labels=labels,
                 sign_language_ids=ids)


@torch.no_grad()
def letter_accuracy(model, batches: list[tuple]) -> tuple[float, list[float]]:
    """Teacher-forced accuracy on letter tokens (not spaces or end-of-sequence), overall and per index bucket."""
    model.eval()
    counts = np.zeros((len(INDEX_BUCKETS) + 1, 2))
    for batch in batches:
        labels = batch[3]
        right = forward(model, batch).logits.argmax(-1).eq(labels)
        letter = labels.ne(IGNORE_INDEX) & labels.ne(ord(" ") + BYTE_OFFSET) & labels.ne(1)
        index = torch.arange(labels.shape[1]).expand_as(labels) // 2  # gloss: letter, space, letter, ...
        counts[0] += [(right & letter).sum().item(), letter.sum().item()]
        for k, (lo, hi) in enumerate(INDEX_BUCKETS, 1):
            chosen = letter & (index >= lo) & (index < hi)
            counts[k] += [(right & chosen).sum().item(), chosen.sum().item()]
    shares = [100 * r / max(n, 1) for r, n in counts]
    return shares[0], shares[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="output/sign_language_model")
    parser.add_argument("--manifest", default="data/fingerspelling/manifest.csv")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="decoder config override")
    parser.add_argument("--steps", type=int, default=2400, help="the gloss demo trains 2,380")
    parser.add_argument("--eval_at", default="600,1200,2400")
    parser.add_argument("--passes", type=int, default=4, help="augmented passes over the training split to cache")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model, tokenizer = probe_model(args.model_dir, args.set)
    manifest = Path(args.manifest)
    entries = read_manifest(manifest)
    data_config = training_data_config(DataConfig.from_dict(model.config.data))
    train, dev = (prepare_all([e for e in entries if e.split == split], data_config, manifest.parent / ".signt5-cache")
                  for split in ("train", "dev"))
    dataset = PreparedDataset(train, model.config.target, AugmentConfig(), args.seed)
    batches = []
    for epoch in range(args.passes):
        dataset.set_epoch(epoch)
        order = BucketBatchSampler(train.lengths(), args.batch_size, shuffle=True, seed=epoch)
        batches += encode(model, tokenizer, [[dataset[i] for i in indices] for indices in order])
    dev_items = dev.items(model.config.target)
    dev_batches = encode(model, tokenizer, [[dev_items[i] for i in indices] for indices in
                                            BucketBatchSampler(dev.lengths(), 32, shuffle=False)])
    refs = [item["label"] for item in dev_items]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / max(1, args.steps - warmup))))
    evaluate_at = {int(x) for x in args.eval_at.split(",")}
    rng = np.random.default_rng(args.seed)
    print(f"{args.model_dir} {' '.join(args.set) or '(run config)'}: {len(batches)} cached batches")
    print("| step | dev letters (teacher-forced) | by index 1 / 2-4 / 5-8 / 9+ | dev attention CER | seconds |")
    print("|---:|---:|---|---:|---:|")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        model.encoder.eval()
        loss = forward(model, batches[rng.integers(len(batches))]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        if step in evaluate_at:
            overall, by_index = letter_accuracy(model, dev_batches)
            hyps, _ = generate_texts(model, tokenizer, dev_items, 64, 1, 64, decoding="attention")
            cer = compute_metrics(refs, hyps).overall["cer"]
            print(f"| {step} | {overall:.1f} % | {' / '.join(f'{a:.0f}' for a in by_index)} | {cer:.2f} % | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)
    hyps, _ = generate_texts(model, tokenizer, dev_items, 64, 1, 64, decoding="ctc")
    print(f"dev CTC CER of the frozen encoder: {compute_metrics(refs, hyps).overall['cer']:.2f} %")


if __name__ == "__main__":
    main()
