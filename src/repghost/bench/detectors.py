"""Detector latency across runtimes, in the three parts a deployed detector is made of.

For each runtime (``eager`` PyTorch, ``onnxruntime``, and the edge runtimes: MNN, ncnn, OpenVINO,
LiteRT) the detector — its backbone re-parameterized — is timed as:

- **body**: the backbone alone (its feature maps), on the runtime;
- **body + head**: the exported graph of :mod:`repghost.detection.graph` (backbone, SSDLite extra layers /
  FPN, heads, box decoding, score activation), on the runtime;
- **end to end**: what a user's call costs (:class:`repghost.deploy.detector_files.DetectorFile`):
  resizing and normalizing a photo, the graph on the runtime, and the post-processing (score threshold,
  top-k, class-wise NMS, boxes back to the photo) in Python;
- **post-processing** alone, on that runtime's own graph output, so its share of the end-to-end time is
  measured, not inferred; with it, how many boxes reached NMS.

The graph runs from the very file ``repghost export`` would write (checked against PyTorch on the
photos before it is timed). End-to-end calls take the bundled photographs in turn, at batch 1; all
parts of all runtimes are timed interleaved (:func:`repghost.bench.latency.time_interleaved`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import to_tensor

from ..data.photos import sample_photos
from ..deploy.detector_export import check_or_remove, deploy_detector, photo_batch, write_graph
from ..deploy.detector_files import DetectorFile, detector_props, open_detector_file
from ..deploy.edge import EDGE_RUNTIMES, edge_runtime
from ..detection.detectors import detector_body
from ..detection.graph import DetectorGraph, postprocess, postprocess_of, prepare, preprocess_of
from ..io import atomic_write_json, atomic_write_text, scratch_dir
from .latency import environment, time_interleaved
from .runtimes import make_runner

#: Runtimes a detector is timed on, and the export format each runs (eager: the PyTorch graph itself).
DETECTOR_RUNTIMES = ("eager", "onnxruntime", *EDGE_RUNTIMES)
FORMAT_OF = {"onnxruntime": "onnx", **{name: name for name in EDGE_RUNTIMES}}
PARTS = ("body", "graph", "e2e", "post")


@dataclass
class DetectorResult:
    detector: str
    runtime: str
    threads: int
    img_size: int
    body_ms: float | None = None
    graph_ms: float | None = None      # body + head (+ box decoding and scores)
    e2e_ms: float | None = None        # preprocessing + graph + post-processing
    post_ms: float | None = None       # post-processing alone (threshold, top-k, NMS, rescale)
    nms_candidates: float | None = None  # mean boxes entering NMS per photo
    runs: int = 0
    error: str = ""

    @property
    def post_share(self) -> float | None:
        return self.post_ms / self.e2e_ms if self.post_ms is not None and self.e2e_ms else None


class BodyMaps(nn.Module):
    """The backbone body's feature maps as one tensor (every map flattened), so each runtime computes
    and returns all of them through its one-output runner."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.flatten(1) for f in self.body(x)], dim=1)


def torch_detector_file(graph: DetectorGraph, props: dict, preprocess, post, categories, config) -> DetectorFile:
    """The PyTorch graph behind the interface of an exported file (the ``eager`` runtime)."""
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return graph(torch.from_numpy(x)).numpy()

    return DetectorFile(Path("pytorch"), "pytorch", "eager", preprocess, post, categories, config, props, run)


def _detector_files(model: nn.Module, categories: list[dict], size: int, runtimes: Sequence[str], threads: int,
                    workdir: Path, log: Callable[[str], None]) -> tuple[dict, dict, DetectorGraph]:
    """``{runtime: DetectorFile}`` of the deploy ``model`` at ``size`` (exports checked on the photos)
    and ``{runtime: error}`` for those that could not run it."""
    graph = DetectorGraph(model, size).eval()
    preprocess, post = preprocess_of(model, size), postprocess_of(model, graph)
    props = detector_props(model.detector_config, categories, preprocess, post)
    photos = photo_batch(preprocess)
    files, errors = {}, {}
    for runtime in runtimes:
        try:
            if runtime == "eager":
                files[runtime] = torch_detector_file(graph, props, preprocess, post, categories, model.detector_config)
                continue
            fmt = FORMAT_OF[runtime]
            suffix = ".onnx" if fmt == "onnx" else edge_runtime(fmt).suffix
            path = workdir / f"graph_{size}{suffix}"
            written = write_graph(graph, path, fmt, size, props, exporter="legacy")
            check_or_remove(path, written, graph, photos, fmt)
            files[runtime] = open_detector_file(path, runtime, threads)
        except Exception as err:  # a runtime that cannot run this detector is a result too
            errors[runtime] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            log(f"{runtime}: {errors[runtime]}")
    return files, errors, graph


def _e2e_runner(detector: DetectorFile, images: list[torch.Tensor]) -> Callable[[], object]:
    cycle = itertools.cycle(images)
    return lambda: detector([next(cycle)])


def _post_runner(detector: DetectorFile, images: list[torch.Tensor], counts: list[int]) -> Callable[[], object]:
    """Post-processing alone on the runtime's own graph outputs for the photos, in turn."""
    transform = detector.preprocess.transform()
    prepared = []
    for image in images:
        batch, sizes, original = prepare([image], transform)
        output = detector.graph(batch)
        prepared.append((output, sizes, original))
        counts.append(_candidates(output, detector))
    cycle = itertools.cycle(prepared)

    def run():
        output, sizes, original = next(cycle)
        return postprocess(output, detector.postprocess, sizes, original, transform)

    return run


def _candidates(output: torch.Tensor, detector: DetectorFile) -> int:
    """How many boxes pass the score threshold (before top-k), i.e. what NMS has to sort through."""
    scores = output[0, :, 4:]
    if detector.postprocess.scores == "softmax":
        scores = scores[:, 1:]
    return int((scores > detector.postprocess.score_thresh).sum())


def bench_detector(model: nn.Module, categories: list[dict], label: str, runtimes: Sequence[str] = ("eager",
                   "onnxruntime"), img_size: int | None = None, threads: int = 1, warmup: int = 5, runs: int = 30,
                   progress: bool = True, log: Callable[[str], None] = print) -> list[DetectorResult]:
    """Time ``model`` (a torchvision SSD / RetinaNet from :func:`repghost.detection.build_detector`) in
    its three parts on each runtime; one :class:`DetectorResult` per runtime."""
    for runtime in runtimes:
        if runtime not in DETECTOR_RUNTIMES:
            raise ValueError(f"a detector is timed on {', '.join(DETECTOR_RUNTIMES)}, not {runtime!r}")
        if runtime in EDGE_RUNTIMES:
            edge_runtime(runtime).require(export=True)
    torch.set_num_threads(threads)
    size = img_size or int(model.detector_config.min_size)
    model = deploy_detector(model.eval(), size, log)
    images = [to_tensor(p) for p in sample_photos()]
    with scratch_dir("bench-det") as workdir:
        files, errors, graph = _detector_files(model, categories, size, runtimes, threads, workdir, log)
        runners, counts = {}, {r: [] for r in files}
        body = BodyMaps(detector_body(model)).eval()
        for runtime, detector in files.items():
            x = photo_batch(detector.preprocess)[:1].numpy()
            try:
                runners[(runtime, "body")] = make_runner(body, runtime, (1, 3, size, size), threads,
                                                         torch.device("cpu"), workdir / "body.onnx")
            except Exception as err:
                errors[runtime] = f"body: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
                continue
            runners[(runtime, "graph")] = lambda d=detector, x=x: d.graph(x)
            runners[(runtime, "e2e")] = _e2e_runner(detector, images)
            runners[(runtime, "post")] = _post_runner(detector, images, counts[runtime])
        times = time_interleaved(runners, warmup, runs, progress, f"{label}, {size}²")
    results = []
    for runtime in runtimes:
        result = DetectorResult(label, runtime, threads, size, error=errors.get(runtime, ""))
        if (runtime, "e2e") in times:
            for part in PARTS:
                setattr(result, f"{part}_ms", float(np.median(times[(runtime, part)])))
            result.runs = len(times[(runtime, "e2e")])
            result.nms_candidates = float(np.mean(counts[runtime]))
        results.append(result)
    return results


def format_detector_table(results: Sequence[DetectorResult]) -> str:
    lines = ["| detector | runtime | threads | size | body ms | body + head ms | end to end ms | post-processing ms "
             "| post share | boxes into NMS |", "|" + "---|" * 10]
    for r in results:
        if r.e2e_ms is None:
            lines.append(f"| {r.detector} | {r.runtime} | {r.threads} | {r.img_size} | failed: {r.error[:80]} "
                         "| – | – | – | – | – |")
            continue
        lines.append(f"| {r.detector} | {r.runtime} | {r.threads} | {r.img_size} | {r.body_ms:.2f} | {r.graph_ms:.2f} "
                     f"| {r.e2e_ms:.2f} | {r.post_ms:.2f} | {r.post_share:.1%} | {r.nms_candidates:.0f} |")
    return "\n".join(lines)


def write_detector_results(results: Sequence[DetectorResult], out_dir: str | os.PathLike,
                           name: str = "detector_latency", meta: dict | None = None) -> dict[str, Path]:
    """``NAME.json`` (results, environment, ``meta``) and ``NAME.md`` (the table)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{name}.{k}" for k in ("json", "md")}
    rows = [{**asdict(r), "post_share": r.post_share} for r in results]
    atomic_write_json(paths["json"], dict(environment=environment(), meta=meta or {}, results=rows,
                                          date=time.strftime("%Y-%m-%d %H:%M")), indent=1)
    atomic_write_text(paths["md"], format_detector_table(results) + "\n")
    return paths
