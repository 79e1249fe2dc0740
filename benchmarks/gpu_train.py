"""Run the demo pipeline on a lent GPU machine that has no .pose files, no internet and no pip index.

Why: the remote gets the working tree plus ``.gpu/`` (wheels and the packed preprocessed splits, see
``.gpu/RUN.md``). The cache is keyed by the .pose files' sizes and times, which the remote lacks, so this
script unpacks ``.gpu/data`` and patches ``prepare_all`` (training and evaluation) to serve those arrays.
``--pack`` writes ``.gpu/data`` from this machine's cache (fixed-point coords, bit-packed masks).
A run is ``make demo``'s pipeline: stage 1, stage 2 (its flags plus the variant's), then every test split
with every decoding. ``--variants "a=FLAGS;b=FLAGS"`` runs each variant as its own process, concurrently
on the one GPU, and prints one markdown table; each variant's figures go to ``--results/NAME.json``,
rewritten after each stage so that a run cut short still reports what it finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

logger = logging.getLogger("gpu_train")
DATA_DIR = Path("data/fingerspelling")
MANIFEST = DATA_DIR / "manifest.csv"
# the Makefile's demo recipe (gloss target: stage 1 four epochs, stage 2 twenty, the decoder phase 3,000 steps)
PRETRAIN = ["--data_dir", str(DATA_DIR), "--epochs", "4", "--batch_size", "64"]
TRAIN = ["--data_dir", str(DATA_DIR), "--target", "gloss", "--epochs", "20", "--batch_size", "16", "--lr", "2e-3",
         "--eval_every_epochs", "5", "--decoder_steps", "3000"]
DECODINGS = ("ctc", "attention", "joint")
STEPS_PER_UNIT = 512  # packed coordinates' resolution (units: shoulder widths after normalisation)


def pack(folder: Path) -> None:
    """Train, dev and every test split as ``signt5`` reads them; coords in int16 fixed point, delta-coded in time."""
    from signt5.data.cache import prepare_all, training_data_config
    from signt5.data.manifest import read_manifest
    from signt5.training.config import TrainConfig

    config, entries = TrainConfig(manifest=str(MANIFEST)), read_manifest(MANIFEST)
    data_config = training_data_config(config.data)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MANIFEST, folder / "manifest.csv")
    splits = [config.train_split, config.dev_split] + sorted({e.split for e in entries if e.split.startswith("test")})
    for name in splits:
        split = [e for e in entries if e.split == name][: None if name != config.dev_split else config.max_eval_samples]
        p = prepare_all(split, data_config, DATA_DIR / ".signt5-cache")
        steps = np.round(p.coords * STEPS_PER_UNIT)  # fixed point: the error of float16 at 1-2 units, half the size
        if np.abs(steps).max() >= 2**15:
            raise SystemExit(f"{name}: coordinates beyond +/-{2**15 / STEPS_PER_UNIT:g} do not fit int16 steps")
        steps = steps.astype(np.int16).transpose(1, 2, 0)  # (K, C, T): time contiguous
        delta = np.ascontiguousarray(np.diff(steps, axis=-1, prepend=np.zeros_like(steps[..., :1]))).view(np.uint8)
        meta = {"ids": [e.id for e in p.entries], "skipped": p.skipped, "data_config": data_config.to_dict(),
                "hand_slices": [[s.start, s.stop] for s in p.hand_slices], "shape": list(p.coords.shape)}
        path = folder / f"{name}.npz"
        np.savez_compressed(path, lo=delta[..., 0::2], hi=delta[..., 1::2], offsets=p.offsets,
                            mask=np.packbits(p.mask), meta=np.array(json.dumps(meta)))
        back = unpack(path)  # the round trip: masks exact, coords exactly their fixed-point values
        assert np.array_equal(back.mask, p.mask) and np.array_equal(back.offsets, p.offsets)
        assert np.abs(back.coords - p.coords).max() <= 0.5 / STEPS_PER_UNIT + 1e-6
        logger.info("%s: %d samples, %.1f MB, max |error| %.1e", name, len(p), path.stat().st_size / 1e6,
                    float(np.abs(back.coords - p.coords).max()))


def unpack(path: Path) -> SimpleNamespace:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    t, k, c = meta["shape"]
    delta = np.stack([z["lo"], z["hi"]], axis=-1).reshape(k, c, t * 2).view(np.int16)
    coords = np.cumsum(delta, axis=-1, dtype=np.int16).transpose(2, 0, 1).astype(np.float32) / STEPS_PER_UNIT
    mask = np.unpackbits(z["mask"], count=t * k).reshape(t, k).astype(bool)
    return SimpleNamespace(coords=coords, mask=mask, offsets=z["offsets"], meta=meta)


def patch_prepare_all(folder: Path) -> list[str]:
    """PATCH: ``prepare_all`` (the training splits' import and the module's, which evaluation imports when it runs)
    serves the packed splits instead of reading .pose files; a sample it lacks is an error, never a read."""
    import signt5.data.cache as cache
    import signt5.training.splits as splits

    packs, hits = [unpack(p) for p in sorted(folder.glob("*.npz"))], []

    def prepare_all(entries, config, cache_dir=None) -> cache.PreparedSamples:
        ids = [e.id for e in entries]
        pk = next((p for p in packs if set(ids) <= set(p.meta["ids"])), None)
        if pk is None or pk.meta["data_config"] != json.loads(json.dumps(config.to_dict())):
            raise RuntimeError(f"{folder}: no packed split holds these {len(ids)} samples with this data config")
        row = {i: n for n, i in enumerate(pk.meta["ids"])}
        spans = [np.arange(pk.offsets[row[i]], pk.offsets[row[i] + 1]) for i in ids]
        take, offsets = np.concatenate(spans), np.cumsum([0] + [len(s) for s in spans], dtype=np.int64)
        hits.append(f"{len(ids)} samples from {folder}")
        return cache.PreparedSamples(list(entries), pk.coords[take], pk.mask[take], offsets,
                                     [slice(a, b) for a, b in pk.meta["hand_slices"]], pk.meta["skipped"])

    splits.prepare_all = cache.prepare_all = prepare_all
    return hits


def config_with(settings: list[str], path: Path) -> list[str]:
    """``--set augment.mirror=0.0`` and the like (fields no flag reaches) as a ``--config`` file for stage 2."""
    from signt5.training.config import TrainConfig

    if not settings:
        return []
    config = TrainConfig().to_dict()
    for setting in settings:
        key, value = setting.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise SystemExit(f"--set {setting}: no field {key}")
        node[leaf] = json.loads(value)
    path.write_text(json.dumps(config, indent=2))
    return ["--config", str(path)]


class StageMeter:
    """Wall time, peak GPU memory and peak host RSS of one stage (the peaks reset at its start)."""

    def __init__(self, torch):
        self.torch, self.cuda = torch, torch.cuda.is_available()

    def __enter__(self) -> "StageMeter":
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        try:  # resets VmHWM to the current RSS (Linux)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.figures = {"wall_s": round(time.perf_counter() - self.start, 1)}
        if self.cuda:
            self.figures["gpu_peak_allocated_mib"] = round(self.torch.cuda.max_memory_allocated() / 2**20)
            self.figures["gpu_peak_reserved_mib"] = round(self.torch.cuda.max_memory_reserved() / 2**20)
        status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
        hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
        rss = int(hwm[0]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.figures["host_peak_rss_mib"] = round(rss)


def run_one(args: argparse.Namespace, train_flags: list[str], pretrain_flags: list[str]) -> None:
    """The demo pipeline in this process; ``args.results`` is rewritten after each stage."""
    import torch

    from signt5.cli import main

    hits = patch_prepare_all(args.data)
    cuda = torch.cuda.is_available()
    result = {"variant": args.name, "train_flags": train_flags, "pretrain_flags": pretrain_flags,
              "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "bf16": bool(cuda and torch.cuda.is_bf16_supported())}

    def save() -> None:
        args.results.write_text(json.dumps(result, indent=1))

    def stage(name: str, argv: list[str], run_dir: Path | None) -> None:
        with StageMeter(torch) as meter:
            rc = main(argv)
        if rc != 0 or not hits:  # no hit would mean the data came from .pose files after all
            result[name] = {"failed": f"exit {rc}, patched loads: {len(hits)}"}
            save()
            raise SystemExit(f"{args.name}: {name} failed (exit {rc})")
        result[name] = meter.figures
        if run_dir is not None:
            result[name]["summary"] = json.loads((run_dir / "train_summary.json").read_text())
            log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
            result[name]["dev"] = next((r for r in reversed(log) if "cer" in r), {})
        save()
        logger.info("%s: %s done in %.0f s", args.name, name, meter.figures["wall_s"])

    stage1, stage2 = args.out / "pose_encoder_contrastive", args.out / "sign_language_model"
    stage("stage1", ["pretrain", *PRETRAIN, "--output_dir", str(stage1), *pretrain_flags], stage1)
    stage("stage2", ["train", *TRAIN, "--output_dir", str(stage2), "--contrastive_model_dir", str(stage1),
                     *train_flags], stage2)
    result["test"] = {}
    for decoding in args.decodings.split():
        out = args.out / f"evaluation_{decoding}.txt"
        stage(f"evaluate_{decoding}", ["evaluate", "--model_dir", str(stage2), "--data_dir", str(DATA_DIR),
                                       "--split", "test*", "--decoding", decoding, "--output_file", str(out),
                                       *shlex.split(args.eval_flags)], None)
        for path in sorted(args.out.glob(f"evaluation_{decoding}_*.json")):
            e = json.loads(path.read_text())
            result["test"].setdefault(e["split"], {})[decoding] = {
                "cer": e["metrics"]["overall"]["cer"], "exact_match": e["metrics"]["overall"]["exact_match"],
                "samples_per_second": e["samples_per_second"]}
        save()


def run_variants(args: argparse.Namespace, extra: list[str]) -> None:
    """Each ``NAME=TRAIN FLAGS [| PRETRAIN FLAGS]`` as its own process (OMP_NUM_THREADS=2), all at once; the
    flags given beside ``--variants`` go to both stages of every variant."""
    variants = [[s.strip() for s in v.split("=", 1)] for v in args.variants.split(";") if v.strip()]
    procs = []
    for name, flags in variants:
        out = args.out_root / name
        out.mkdir(parents=True, exist_ok=True)
        words = shlex.split(flags)
        cut = words.index("|") if "|" in words else len(words)
        cmd = [sys.executable, __file__, "--name", name, "--out", str(out), "--data", str(args.data),
               "--eval_flags", args.eval_flags, "--decodings", args.decodings,
               "--results", str(args.results_dir / f"{name}.json"), "--", *extra, *words[:cut], "|", *extra,
               *words[cut + 1:]]
        logger.info("start %s: %s (log in %s)", name, shlex.join(cmd), out / "log.txt")
        with (out / "log.txt").open("w") as log:
            procs.append(subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "2"}, stdout=log,
                                          stderr=subprocess.STDOUT))
    failed = 0
    for (name, _), proc in zip(variants, procs):
        if proc.wait() != 0:
            failed += 1
            text = (args.out_root / name / "log.txt").read_text(errors="replace").replace("\r", "\n")
            print(f"== {name} failed (exit {proc.returncode}); its log ends:\n" + "\n".join(text.splitlines()[-25:]))
    print(table([json.loads(p.read_text()) for p in sorted(args.results_dir.glob("*.json"))]))
    sys.exit(int(failed > 0))


def table(results: list[dict]) -> str:
    """One row per variant: each stage's speed and memory, then CER per split (ctc / attention / joint)."""
    splits = sorted({s for r in results for s in r.get("test", {})})
    head = ["variant", "stage 1 samples/s", "stage 2 samples/s", "stage 2 wall s", "GPU peak MiB (alloc/reserved)",
            "dev ctc/att/joint"] + splits
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        s1, s2 = r.get("stage1", {}), r.get("stage2", {})
        dev = s2.get("dev", {})
        cells = [r["variant"], f"{s1.get('summary', {}).get('train_samples_per_second', 0):.1f}",
                 f"{s2.get('summary', {}).get('train_samples_per_second', 0):.1f}", str(s2.get("wall_s", "-")),
                 f"{s2.get('gpu_peak_allocated_mib', '-')}/{s2.get('gpu_peak_reserved_mib', '-')}",
                 "/".join(f"{dev[f'cer_{d}']:.2f}" if f"cer_{d}" in dev else "-" for d in DECODINGS)]
        cells += ["/".join(f"{r['test'][s][d]['cer']:.2f}" if d in r.get("test", {}).get(s, {}) else "-"
                           for d in DECODINGS) for s in splits]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data", type=Path, default=Path(".gpu/data"), help="packed splits and manifest.csv")
    p.add_argument("--pack", action="store_true", help="write --data from data/fingerspelling's cache, then stop")
    p.add_argument("--name", default="demo")
    p.add_argument("--out", type=Path, default=Path("output/gpu_train"), help="this run's folder")
    p.add_argument("--results", type=Path, default=None, help="this run's figures (default: OUT/result.json)")
    p.add_argument("--eval_flags", default="--batch_size 64",
                   help="flags of signt5 evaluate (decoding does not depend on the batch size)")
    p.add_argument("--decodings", default=" ".join(DECODINGS), help="those to score every test split with ('': none)")
    p.add_argument("--variants", default=None, help='"NAME=FLAGS;NAME2=FLAGS2 | PRETRAIN FLAGS", run concurrently')
    p.add_argument("--out_root", type=Path, default=Path("output/gpu_variants"))
    p.add_argument("--results_dir", type=Path, default=None, help="each variant's NAME.json (default: OUT_ROOT)")
    args, rest = p.parse_known_args()
    rest = [a for a in rest if a != "--"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.pack:
        pack(args.data)
        return
    if not MANIFEST.exists():  # the remote has no data/: the packed manifest stands in (once, before any variant)
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.data / "manifest.csv", MANIFEST)
    if args.variants:
        args.results_dir = args.results_dir or args.out_root
        args.results_dir.mkdir(parents=True, exist_ok=True)
        run_variants(args, rest)
        return
    cut = rest.index("|") if "|" in rest else len(rest)
    train_words, pretrain_flags = rest[:cut], rest[cut + 1:]
    train_flags, sets = [], []
    while train_words:
        word = train_words.pop(0)
        if word == "--set":
            sets.append(train_words.pop(0))
        else:
            train_flags.append(word)
    args.out.mkdir(parents=True, exist_ok=True)
    args.results = args.results or args.out / "result.json"
    run_one(args, config_with(sets, args.out / "stage2_config.json") + train_flags, pretrain_flags)


if __name__ == "__main__":
    main()
