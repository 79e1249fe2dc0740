"""Where does the decoder look when it writes a wrong letter? Teacher-forced letter errors and cross-attention.

Each split of a trained run is read teacher-forced (the reference prefix, eval mode, the decoder's positions from
the labels' CTC forced alignment, as in training). For every letter token: right or wrong, and when wrong, whether
the decoder wrote the next letter of the word. For each kind, the mean cross-attention mass (heads averaged) per
decoder layer on the frames that the forced alignment gives the token's own letter, the previous and the next.
A decoder that writes the next letter while looking at the next letter's frames has lost its place, not misread.

    python benchmarks/attention_placement.py --model_dir output/sign_language_model --splits dev test test_slow
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.data.cache import prepare_all  # noqa: E402
from signt5.data.dataset import pad_batch  # noqa: E402
from signt5.data.manifest import read_manifest  # noqa: E402
from signt5.decoding.predictor import Predictor  # noqa: E402
from signt5.models.alignment import eager_attention  # noqa: E402
from signt5.models.labels import model_inputs  # noqa: E402

PLACES = ("previous", "own", "next")


def placement(predictor: Predictor, items: list, batch_size: int) -> tuple[dict, dict]:
    """Counts of right, next-letter and other wrong letter tokens, and per (kind, layer, place) the attention
    masses on that place's frames."""
    model, counts, masses = predictor.model.eval(), defaultdict(int), defaultdict(list)
    for start in range(0, len(items), batch_size):
        inputs = model_inputs(pad_batch(items[start:start + batch_size]), model.config, predictor.tokenizer,
                              torch.device("cpu"), 64)
        languages = inputs.get("sign_language_ids")
        with torch.no_grad(), eager_attention(model.decoder.config):
            encoded = model.encoder(inputs["pose"], inputs["point_mask"], inputs["frame_mask"], languages)
            out = model(encoder_outputs=encoded, labels=inputs["labels"], sign_language_ids=languages,
                        output_attentions=True)
            log_probs, mask = model.ctc_log_probs(encoded)
            alignment = model.forced_alignment(log_probs, mask, inputs["labels"], languages)
        predicted, labels = out.logits.argmax(-1), inputs["labels"]  # (B, L)
        attention = [layer.mean(1) for layer in out.cross_attentions]  # per layer (B, L, S)
        for i, (path, units) in enumerate(alignment):
            if path is None:
                continue
            path = torch.tensor(path)
            for j, unit in enumerate(units):
                if unit is None or unit < 0:
                    continue
                following = [k for k, u in enumerate(units) if u == unit + 1]
                if predicted[i, j] == labels[i, j]:
                    kind = "right"
                elif following and predicted[i, j] == labels[i, following[0]]:
                    kind = "wrong: the next letter"
                else:
                    kind = "wrong: other"
                counts[kind] += 1
                for layer, weights in enumerate(attention):
                    row = weights[i, j, :len(path)]
                    for place, offset in zip(PLACES, (-1, 0, 1)):
                        masses[(kind, layer, place)].append(float(row[path == unit + offset].sum()))
    return counts, masses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="output/sign_language_model")
    parser.add_argument("--data_dir", default="data/fingerspelling")
    parser.add_argument("--splits", nargs="+", default=["dev", "test"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.model_dir)
    layers = predictor.model.config.text_config.num_decoder_layers
    print(f"model: {predictor.model_dir}\n")
    print("| split | letter tokens | kind | share % | " + " | ".join(
        f"layer {layer}: {place}" for layer in range(layers) for place in PLACES) + " |")
    print("|---|---:|---|---:|" + "---:|" * (layers * len(PLACES)))
    for split in args.splits:
        entries = read_manifest(Path(args.data_dir) / "manifest.csv", split=split)
        items, _ = predictor.normalise_rates(prepare_all(entries, predictor.data_config).items(predictor.target),
                                             args.batch_size)
        counts, masses = placement(predictor, items, args.batch_size)
        total = sum(counts.values())
        for kind in ("right", "wrong: the next letter", "wrong: other"):
            cells = [sum(v) / len(v) if (v := masses[(kind, layer, place)]) else float("nan")
                     for layer in range(layers) for place in PLACES]
            print(f"| {split} | {total} | {kind} | {100 * counts[kind] / max(total, 1):.2f} | "
                  + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
