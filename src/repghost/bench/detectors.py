"""Detector latency across runtimes, in the three parts a deployed detector is made of.

For each runtime (``eager`` PyTorch, ``onnxruntime``, and the edge runtimes: MNN, ncnn, OpenVINO,
LiteRT) the detector — its backbone re-parameterized — is timed as:

- **body**: the backbone alone (its feature maps), on the runtime;
- **body + head**: the exported graph of :mod:`repghost.detection.graph` (backbone, SSDLite extra layers /
  FPN, heads, box decoding, score activation), on the runtime;
- **end to end**: what a user's call costs (:class:`repghost.deploy.detector_files.DetectorFile`):
  resizing and normalizing a photo, the graph on the runtime, and the post-processing (score threshold,
  top-k, class-wise NMS, boxes back to the photo) in Python;
- **post-processing**: the part of each end-to-end call spent after the graph, timed inside the call, so
  its share of the end-to-end time is measured per call, not inferred from separate runs; with it, how
  many boxes reached NMS.

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
PARTS = ("body", "graph", "e2e")


@dataclass
class DetectorResult:
    detector: str
    runtime: str
    threads: int
    img_size: int
    body_ms: float | None = None
    graph_ms: float | None = None      # body + head (+ box decoding and scores)
    e2e_ms: float | None = None        # preprocessing + graph + post-processing
    post_ms: float | None = None       # the post-processing inside those calls (threshold, top-k, NMS, rescale)
    post_share: float | None = None    # median over calls of post-processing / end-to-end time
    nms_candidates: float | None = None  # mean boxes reaching NMS per photo
    #: median process CPU time of an end-to-end call (all threads): on a busy machine, the work done
    #: without the waits other jobs impose on the wall time
    e2e_cpu_ms: float | None = None
    post_cpu_ms: float | None = None
    post_cpu_share: float | None = None  # median over calls of post-processing / end-to-end CPU time
    runs: int = 0
    error: str = ""


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


class EndToEnd:
    """A user's call on the photos in turn (:meth:`DetectorFile.__call__`, step by step), recording how
    long each call spent in the post-processing and how many boxes reached NMS."""

    def __init__(self, detector: DetectorFile, images: list[torch.Tensor]):
        self.detector, self.images, self.num_images = detector, itertools.cycle(images), len(images)
        self.transform = detector.preprocess.transform()
        self.post_ms: list[float] = []
        self.post_cpu_ms: list[float] = []
        self.candidates: list[int] = []

    def __call__(self):
        batch, sizes, original = prepare([next(self.images)], self.transform)
        output = self.detector.graph(batch)
        start, start_cpu = time.perf_counter(), time.process_time()
        detections = postprocess(output, self.detector.postprocess, sizes, original, self.transform)
        self.post_ms.append((time.perf_counter() - start) * 1e3)
        self.post_cpu_ms.append((time.process_time() - start_cpu) * 1e3)
        if len(self.candidates) < self.num_images:  # once per photo, in the warm-up calls (untimed)
            self.candidates.append(nms_candidates(output, self.detector))
        return detections


def nms_candidates(output: torch.Tensor, detector: DetectorFile) -> int:
    """How many boxes reach NMS: those over the score threshold, at most top-k per class (SSDLite) or per
    level (RetinaNet)."""
    post = detector.postprocess
    scores = output[0, :, 4:]
    if post.scores == "softmax":
        passed = (scores[:, 1:] > post.score_thresh).sum(dim=0)
    else:
        passed = torch.stack([(level > post.score_thresh).sum() for level in scores.split(post.anchors_per_level)])
    return int(passed.clamp(max=post.topk_candidates).sum())


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
        runners, e2e = {}, {}
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
            runners[(runtime, "e2e")] = e2e[runtime] = EndToEnd(detector, images)
        cpu_times: dict = {}
        times = time_interleaved(runners, warmup, runs, progress, f"{label}, {size}²", cpu_times)
    results = []
    for runtime in runtimes:
        result = DetectorResult(label, runtime, threads, size, error=errors.get(runtime, ""))
        if (runtime, "e2e") in times:
            for part in PARTS[:3]:
                setattr(result, f"{part}_ms", float(np.median(times[(runtime, part)])))
            result.runs = len(times[(runtime, "e2e")])
            timed = e2e[runtime].post_ms[-result.runs:]  # the timed rounds, not the warm-up
            result.post_ms = float(np.median(timed))
            result.post_share = float(np.median(np.array(timed) / np.array(times[(runtime, "e2e")])))
            result.nms_candidates = float(np.mean(e2e[runtime].candidates))
            cpu = np.array(cpu_times[(runtime, "e2e")])
            post_cpu = np.array(e2e[runtime].post_cpu_ms[-result.runs:])
            result.e2e_cpu_ms, result.post_cpu_ms = float(np.median(cpu)), float(np.median(post_cpu))
            result.post_cpu_share = float(np.median(post_cpu / np.maximum(cpu, 1e-9)))
        results.append(result)
    return results


def format_detector_table(results: Sequence[DetectorResult]) -> str:
    lines = ["| detector | runtime | threads | size | body ms | body + head ms | end to end ms | post-processing ms "
             "| post share | end to end CPU ms | post CPU ms | post CPU share | boxes into NMS |", "|" + "---|" * 13]
    for r in results:
        if r.e2e_ms is None:
            lines.append(f"| {r.detector} | {r.runtime} | {r.threads} | {r.img_size} | failed: {r.error[:80]} "
                         "| – | – | – | – | – | – | – | – |")
            continue
        lines.append(f"| {r.detector} | {r.runtime} | {r.threads} | {r.img_size} | {r.body_ms:.2f} | {r.graph_ms:.2f} "
                     f"| {r.e2e_ms:.2f} | {r.post_ms:.2f} | {r.post_share:.1%} | {r.e2e_cpu_ms:.2f} "
                     f"| {r.post_cpu_ms:.2f} | {r.post_cpu_share:.1%} | {r.nms_candidates:.0f} |")
    return "\n".join(lines)


def write_detector_results(results: Sequence[DetectorResult], out_dir: str | os.PathLike,
                           name: str = "detector_latency", meta: dict | None = None) -> dict[str, Path]:
    """``NAME.json`` (results, environment, ``meta``) and ``NAME.md`` (the table)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{name}.{k}" for k in ("json", "md")}
    rows = [asdict(r) for r in results]
    atomic_write_json(paths["json"], dict(environment=environment(), meta=meta or {}, results=rows,
                                          date=time.strftime("%Y-%m-%d %H:%M")), indent=1)
    atomic_write_text(paths["md"], format_detector_table(results) + "\n")
    return paths
