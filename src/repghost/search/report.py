"""What a search tells: one log record per ``log_every`` steps, and at the end the found architecture
(``arch.json``, ``report.md``) with its predicted and, on this machine, measured latency."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..costmodel.fit import CostModel
from ..io import atomic_write_json, atomic_write_text
from ..models.searched import SearchSpace
from ..progress import write
from .config import ARCH_FILE, SearchConfig, SearchResult
from .setup import learning_rate

if TYPE_CHECKING:
    from .engine import Search


def log_record(search: Search, window: list[dict]) -> dict:
    """The mean of the last steps' numbers, with the controller's current state."""
    entry = dict(step=search.step, phase="warm-up" if search.step <= search.config.warmup_steps else "joint",
                 lr=learning_rate(search.config, search.step - 1))
    for key in ("train_loss", "held_out_loss", "quality", "sampled_ms", "reward"):
        values = [r[key] for r in window if key in r and math.isfinite(r[key])]
        if values:
            entry[key] = float(np.mean(values))
    entry["skipped_images"] = int(sum(r["skipped"] for r in window))
    return {**entry, **search.summary()}


def format_record(entry: dict, steps: int) -> str:
    parts = [f"step {entry['step']}/{steps} [{entry['phase']}]",
             f"train loss {entry.get('train_loss', float('nan')):.3f}"]
    if "reward" in entry:
        parts += [f"held-out Q {entry['quality']:.4f}", f"loss {entry['held_out_loss']:.3f}",
                  f"reward {entry['reward']:.4f}",
                  f"sampled {entry['sampled_ms']:.2f} ms"]
    if entry["phase"] == "warm-up":
        parts.append("controller uniform until the warm-up ends")
    else:
        parts += [f"entropy {entry['entropy']:.2f}", f"most likely {entry['most_likely_ms']:.2f} ms:",
                  " ".join(short_choice(name) for name in entry["most_likely"])]
    if entry["skipped_images"]:
        parts.append(f"skipped {entry['skipped_images']} unreadable image(s)")
    return "  ".join(parts)


def short_choice(name: str) -> str:
    """A layer choice in a few characters for log lines: ``ibn_k5_e8`` → ``I5e8``,
    ``tucker_k3_r25_75`` → ``T3r25/75``, ``repghost_k3_e4`` → ``R3e4``, ``fused_k5_e4`` → ``F5e4``."""
    op, kernel, *rest = name.split("_")
    return op[0].upper() + kernel[1:] + "/".join(rest)


# -- the result ---------------------------------------------------------------------------------
def measure(space: SearchSpace, arch: Sequence[str], timing: dict) -> dict:
    """The deploy-form latency of ``arch`` on this machine under the cost model's timing settings,
    with the reference architecture timed in the same rounds."""
    from ..costmodel.sampling import TimingSettings, time_archs

    settings = TimingSettings(runtime=timing.get("runtime", "onnxruntime"), threads=int(timing.get("threads", 1)),
                              batch=int(timing.get("batch", 1)), img_size=int(timing.get("img_size", 320)),
                              warmup=5, runs=30, chunk=1, reference=timing.get("reference") or "mobiledet_cpu")
    threads = torch.get_num_threads()
    try:
        (record,) = time_archs(space, [arch], settings, progress=False)
    finally:
        torch.set_num_threads(threads)  # timing sets its own; the caller's must survive
    return dict(measured_ms=record["median_ms"], reference=settings.reference,
                reference_measured_ms=record.get("ref_median_ms"), relative_to_reference=record.get("rel_to_ref"),
                runtime=settings.runtime, threads=settings.threads, batch=settings.batch, img_size=settings.img_size,
                runs=settings.runs, params=record["params"], macs=record["macs"])


def choice_counts(arch: Sequence[str]) -> dict[str, int]:
    """How many layers picked each layer type (ibn / fused / tucker / repghost)."""
    counts: dict[str, int] = {}
    for name in arch:
        op = name.split("_", 1)[0]
        counts[op] = counts.get(op, 0) + 1
    return counts


def finish(search: Search, cost_model: CostModel, config: SearchConfig, out: Path, is_main: bool) -> SearchResult:
    space, arch = search.space, search.most_likely()
    predicted = search.cost(search.controller.most_likely())
    timing = None
    if is_main:
        probs = search.controller.probs
        layers = [dict(layer=i, in_chs=p.in_chs, out=p.out, stride=p.stride, residual=p.residual, choice=name,
                       probability=float(probs[i, space.choice_names.index(name)]))
                  for i, (p, name) in enumerate(zip(space.positions, arch, strict=True))]
        result = {**space.arch_to_json(arch), "predicted_ms": predicted, "target_ms": config.target_ms,
                  "measured": None, "choice_counts": choice_counts(arch), "layer_details": layers,
                  "costmodel": dict(path=str(config.costmodel), timing=cost_model.timing,
                                    metrics=cost_model.metrics.get("test")),
                  "search": dict(steps=search.step, warmup_steps=config.warmup_steps, tau=config.tau,
                                 seed=config.seed, final=search.history[-1] if search.history else None)}
        _write_result(out, result)  # before timing: a runtime missing here must not cost the search's result
        if config.measure:
            try:
                timing = measure(space, arch, cost_model.timing)
            except (ImportError, RuntimeError, OSError, ValueError) as err:
                write(f"warning: could not time the result under the cost model's settings here ({err}); "
                      "arch.json keeps the predicted latency only")
            else:
                _write_result(out, {**result, "measured": timing})
        write(f"architecture: {', '.join(arch)}")
        write(f"layer types: {result['choice_counts']}; predicted {predicted:.3f} ms (target {config.target_ms:g})"
              + (f", measured {timing['measured_ms']:.3f} ms on this machine ({timing['runtime']}, "
                 f"{timing['threads']} thread(s), {timing['img_size']}²; {timing['reference']} "
                 f"{timing['reference_measured_ms']:.3f} ms in the same rounds)" if timing else ""))
        write(f"wrote {out / ARCH_FILE} (use it as `--backbone {out / ARCH_FILE}` or `create_model(path)`)")
    measured = timing["measured_ms"] if timing else None
    return SearchResult(out, arch, predicted, measured, search.step, False, search.history)


def _write_result(out: Path, result: dict) -> None:
    atomic_write_json(out / ARCH_FILE, result)
    atomic_write_text(out / "report.md", report(result))


def report(result: dict) -> str:
    """The found architecture as Markdown: one row per searchable layer, and the latencies."""
    lines = ["# Architecture search result", "",
             f"Predicted latency **{result['predicted_ms']:.3f} ms** (target {result['target_ms']:g} ms, cost model "
             f"`{result['costmodel']['path']}`)."]
    timing = result.get("measured")
    if timing:
        lines.append(f"Measured on the searching machine: **{timing['measured_ms']:.3f} ms** ({timing['runtime']}, "
                     f"{timing['threads']} thread(s), batch {timing['batch']}, {timing['img_size']}², median of "
                     f"{timing['runs']}); `{timing['reference']}` in the same rounds: "
                     f"{timing['reference_measured_ms']:.3f} ms.")
    lines += ["", f"Layer types: {json.dumps(result['choice_counts'])}.", "",
              "| layer | in → out | stride | residual | choice | probability |", "|---|---|---|---|---|---|"]
    for d in result["layer_details"]:
        lines.append(f"| {d['layer']} | {d['in_chs']} → {d['out']} | {d['stride']} | {'yes' if d['residual'] else 'no'}"
                     f" | `{d['choice']}` | {d['probability']:.2f} |")
    return "\n".join(lines) + "\n"
