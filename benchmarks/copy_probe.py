"""Can the decoder learn to read its memory in order? The copy probe, with perfect input.

The memory holds each letter of a random 3-9 letter string as a fixed random vector, repeated over
``--frames`` frames; the target is the letters, spaced ("D E N N I S"). Only SignT5's decoder side
trains (the pose encoder is bypassed through ``encoder_outputs``). Teacher-forced letter accuracy on
held-out strings after N steps says how fast the decoder learns to align (issue 10: without
positions it plateaus near 35 %; a vanilla transformer decoder reaches 98 % in 300 steps).

    python benchmarks/copy_probe.py --steps 500                      # the model's defaults
    python benchmarks/copy_probe.py --steps 500 --positions none   # before the fix
"""

from __future__ import annotations

import argparse
import string
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.models.configuration import build_config  # noqa: E402
from signt5.models.encoder import PoseEncoderOutput  # noqa: E402
from signt5.models.modeling import SignT5ForConditionalGeneration  # noqa: E402
from signt5.models.pose_encoder import PoseEncoderConfig  # noqa: E402
from signt5.models.text import byte_tokenizer, tokenize_targets, umt5_config  # noqa: E402

LETTERS = string.ascii_uppercase


def copy_batch(generator: torch.Generator, letter_vectors: torch.Tensor, batch_size: int, frames: int,
               min_letters: int = 3, max_letters: int = 9) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Memory (B, T, D), its mask (B, T) and the spaced target strings."""
    lengths = torch.randint(min_letters, max_letters + 1, (batch_size,), generator=generator).tolist()
    words = [torch.randint(0, len(LETTERS), (n,), generator=generator) for n in lengths]
    longest = max(lengths) * frames
    memory = torch.zeros(batch_size, longest, letter_vectors.shape[1])
    mask = torch.zeros(batch_size, longest, dtype=torch.bool)
    for i, word in enumerate(words):
        memory[i, : len(word) * frames] = letter_vectors[word].repeat_interleave(frames, 0)
        mask[i, : len(word) * frames] = True
    return memory, mask, [" ".join(LETTERS[j] for j in word.tolist()) for word in words]


def letter_accuracy(model: SignT5ForConditionalGeneration, memory: torch.Tensor, mask: torch.Tensor,
                    labels: torch.Tensor) -> float:
    """Teacher-forced accuracy on the letters (spaces, eos and padding not counted)."""
    model.eval()
    with torch.no_grad():
        logits = model(encoder_outputs=PoseEncoderOutput(last_hidden_state=memory, attention_mask=mask),
                       labels=labels).logits
    model.train()
    letters = (labels >= ord("A") + 3) & (labels <= ord("Z") + 3)
    return (logits.argmax(-1)[letters] == labels[letters]).float().mean().item()


def run(steps: int, batch_size: int = 32, lr: float = 1e-3, frames: int = 3, seed: int = 0,
        eval_at: tuple[int, ...] = (100, 200, 300, 500, 800), return_model: bool = False,
        **config_kwargs) -> dict[int, float] | tuple[dict[int, float], SignT5ForConditionalGeneration, torch.Tensor]:
    """Train the decoder on copy batches; letter accuracy at each step in ``eval_at`` (and the last)."""
    torch.manual_seed(seed)
    dropout = config_kwargs.pop("dropout", None)
    overrides = {} if dropout is None else {"dropout_rate": dropout}
    text = umt5_config(config_kwargs.pop("text_preset", "cpu"), **overrides)
    config = build_config(PoseEncoderConfig(), text, ctc_weight=0.0, **config_kwargs)
    model = SignT5ForConditionalGeneration(config)
    tokenizer = byte_tokenizer()
    generator = torch.Generator().manual_seed(seed)
    letter_vectors = torch.randn(len(LETTERS), text.d_model, generator=generator) * 0.6  # ~ the projection's scale
    held_out = copy_batch(generator, letter_vectors, 256, frames)
    held_out_labels = tokenize_targets(tokenizer, held_out[2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    accuracy = {}
    for step in range(1, steps + 1):
        memory, mask, texts = copy_batch(generator, letter_vectors, batch_size, frames)
        labels = tokenize_targets(tokenizer, texts)
        loss = model(encoder_outputs=PoseEncoderOutput(last_hidden_state=memory, attention_mask=mask),
                     labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in eval_at or step == steps:
            accuracy[step] = letter_accuracy(model, held_out[0], held_out[1], held_out_labels)
    if return_model:
        return accuracy, model.eval(), letter_vectors
    return accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--frames", type=int, default=3, help="memory frames per letter")
    parser.add_argument("--positions", default="both_ends", choices=["both_ends", "sinusoidal", "none"])
    parser.add_argument("--dropout", type=float, default=None, help="decoder dropout (default: the preset's 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    accuracy = run(args.steps, args.batch_size, args.lr, args.frames, args.seed, positions=args.positions,
                   dropout=args.dropout)
    seconds = time.perf_counter() - start
    print(f"positions={args.positions} dropout={args.dropout} "
          f"frames={args.frames} lr={args.lr} seed={args.seed} ({seconds:.0f} s)")
    print("| step | letter accuracy |\n|---:|---:|")
    for step, value in accuracy.items():
        print(f"| {step} | {100 * value:.1f} % |")


if __name__ == "__main__":
    main()
