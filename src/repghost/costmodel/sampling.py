"""Timing sampled architectures on this machine, resumably.

A sampling directory holds ``space.json`` (the space's id and fingerprint and the timing settings)
and ``records.jsonl``, one JSON line per timed architecture. Each line is appended with one
``write`` and fsync'd, so an interrupted run loses at most the architectures it was timing; the
next run skips every architecture already on disk and times only the rest. A last line torn by a
crash mid-write is dropped (saying so) and its architecture timed again; a bad line anywhere else
is corruption, refused with its line number. A directory made for another space, or with other
timing settings (runtime, threads, batch, input size), is refused: timings from different settings
must not be fitted together.

Architectures are timed in chunks: each chunk's models are built in deploy form (every BN folded),
exported, warmed up, then run interleaved round by round by the benchmark harness
(:mod:`repghost.bench`), so a slow drift of the machine hits all of them alike; the record keeps
the median and every run.

On a shared machine the speed itself drifts (other jobs come and go), by several × over a long
sampling run, and a median alone then measures the machine's load as much as the architecture.
With a ``reference`` architecture (the CLI's default: the space's, ``mobiledet_cpu`` / ``repghostnet_100``)
every chunk also runs the reference in each round, and each record keeps ``rel_to_ref``: the median over
rounds of its time divided by the reference's time in the same round. :func:`latencies` turns that back
into milliseconds at the reference's median speed over the whole directory.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..bench.latency import time_interleaved
from ..bench.runtimes import RUNTIMES, make_runner
from ..deploy.onnx_export import export_for_runtime
from ..io import TornLine, append_jsonl, atomic_write_json, read_format_json, repair_jsonl, scan_jsonl, scratch_dir
from ..limits import COUNT, COUNT0, Number, check_limits, limited
from ..models.space import ArchSpace, SpaceError, get_space
from ..names import COSTMODEL_CLOCKS
from ..profile import profile
from ..progress import is_terminal, write
from ..progress import progress as progress_bar
from ..reparam import reparameterize

META_FILE = "space.json"
RECORDS_FILE = "records.jsonl"
SAMPLES_FORMAT = "repghost-costmodel-samples/1"


@dataclass(frozen=True)
class TimingSettings:
    runtime: str = "onnxruntime"
    threads: int = limited(COUNT, default=1)
    batch: int = limited(COUNT, default=1)
    img_size: int = limited(Number(int, 32), default=320)  # five stride-2 stages
    warmup: int = limited(COUNT0, default=3)
    runs: int = limited(COUNT, default=10)
    chunk: int = limited(COUNT, default=8)
    reference: str | None = "mobiledet_cpu"

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        check_limits(self)

    #: Settings that change what a timing means; the others (warm-up, runs, chunk) may vary between resumes.
    def identity(self) -> dict:
        return dict(runtime=self.runtime, threads=self.threads, batch=self.batch, img_size=self.img_size,
                    reference=self.reference)


def _open_directory(space: ArchSpace, out_dir: Path, settings: TimingSettings) -> None:
    """Create ``space.json`` or check that the directory's space and timing settings are ours."""
    meta_path = out_dir / META_FILE
    meta = dict(format=SAMPLES_FORMAT, space=space.describe()["id"], fingerprint=space.fingerprint,
                timing=settings.identity())
    if not meta_path.exists():
        if (out_dir / RECORDS_FILE).exists():
            raise SpaceError(f"{out_dir} has {RECORDS_FILE} but no {META_FILE}; refusing to add to it")
        atomic_write_json(meta_path, meta)
        return
    found = read_format_json(meta_path, SAMPLES_FORMAT, SpaceError, "repghost sampling directory's space file")
    space.check_fingerprint(found, str(out_dir))
    if found.get("timing") != settings.identity():
        raise SpaceError(f"{out_dir} holds timings with {found.get('timing')}, not {settings.identity()}; "
                         "use another directory")


def directory_space(out_dir: str | os.PathLike) -> ArchSpace:
    """The space a sampling directory's ``space.json`` names (:class:`SpaceError` if it names none we know)."""
    meta_path = Path(out_dir) / META_FILE
    if not meta_path.is_file():
        raise SpaceError(f"{out_dir} is not a sampling directory (no {META_FILE})")
    found = read_format_json(meta_path, SAMPLES_FORMAT, SpaceError, "repghost sampling directory's space file")
    return get_space(str(found.get("space")))


def read_records(out_dir: str | os.PathLike, space: ArchSpace | None = None) -> list[dict]:
    """The records of a sampling directory (checked against ``space`` when given). A torn last line
    (a run stopped while writing it) is ignored with a warning on stderr; a bad line anywhere else is
    corruption and an error naming the line."""
    out_dir = Path(out_dir)
    meta_path = out_dir / META_FILE
    if not meta_path.is_file():
        raise SpaceError(f"{out_dir} is not a sampling directory (no {META_FILE})")
    if space is not None:
        try:
            found = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SpaceError(f"{meta_path}: unreadable ({err})") from err
        space.check_fingerprint(found if isinstance(found, dict) else {}, str(out_dir))
    path = out_dir / RECORDS_FILE
    if not path.exists():
        return []
    records, torn = _scan_records(path)
    if torn is not None:
        print(f"warning: {path}:{torn.line}: ignoring a torn last line (a sampling run stopped while writing it)",
              file=sys.stderr)
    return records


def _scan_records(path: Path) -> tuple[list[dict], TornLine | None]:
    """Every timing record of ``path`` and its torn last line, if any (:func:`repghost.io.scan_jsonl`); a
    corrupt line, or JSON that is not a timing record, is refused naming its line."""
    try:
        values, torn = scan_jsonl(path)
    except ValueError as err:
        raise SpaceError(str(err)) from None
    for number, record in values:
        if not (isinstance(record, dict) and isinstance(record.get("arch"), list)):
            raise SpaceError(f"{path}:{number}: valid JSON but not a timing record (an object with 'arch'); "
                             "the file is corrupt: repair or remove that line")
    return [record for _, record in values], torn


def _prepare_append(path: Path) -> None:
    """Drop a torn last line (saying so: its architecture is then timed again) before appending."""
    try:
        torn = repair_jsonl(path)
    except ValueError as err:
        raise SpaceError(str(err)) from None
    if torn is not None:
        print(f"warning: {path}:{torn.line}: dropped a torn last line (a sampling run stopped while writing "
              "it); its architecture is timed again", file=sys.stderr)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _runner(space: ArchSpace, arch: Sequence[str], settings: TimingSettings, onnx_path: Path):
    """(runner, cost) of ``arch`` in deploy form under ``settings.runtime``."""
    size = (settings.batch, 3, settings.img_size, settings.img_size)
    deployed = reparameterize(space.build(arch).eval())
    cost = profile(deployed, (1, 3, settings.img_size, settings.img_size))
    onnx_path.unlink(missing_ok=True)
    if settings.runtime == "onnxruntime":
        export_for_runtime(deployed, onnx_path, size)
    return make_runner(deployed, settings.runtime, size, settings.threads, torch.device("cpu"), onnx_path), cost


def time_archs(space: ArchSpace, archs: Sequence[Sequence[str]], settings: TimingSettings,
               progress: bool = True, workdir: str | os.PathLike | None = None) -> Iterator[dict]:
    """Time ``archs`` (deploy form) chunk by chunk; yields one record per architecture as each
    chunk finishes: ``arch``, ``median_ms``, ``times_ms``, ``params``, ``macs``, timing info, and
    with a reference ``rel_to_ref`` and the reference's ``ref_median_ms`` in that chunk. The exports
    go to ``workdir``, by default a scratch directory removed when the generator finishes or is closed."""
    if workdir is not None:
        yield from _time_archs(space, archs, settings, progress, Path(workdir))
        return
    with scratch_dir("costmodel") as tmp:
        yield from _time_archs(space, archs, settings, progress, tmp)


def _time_archs(space: ArchSpace, archs: Sequence[Sequence[str]], settings: TimingSettings, progress: bool,
                workdir: Path) -> Iterator[dict]:
    torch.set_num_threads(settings.threads)
    reference = None
    if settings.reference:
        reference, _ = _runner(space, space.load_arch(settings.reference), settings, workdir / "reference.onnx")
    bar = progress_bar(total=len(archs), desc="timing architectures", enabled=progress, unit="arch")
    # A log gets one line per chunk (tqdm's carriage-return frames would pile up in it).
    chunk_lines, done = progress and not is_terminal(), 0
    for chunk in _chunks(list(archs), settings.chunk):
        runners, costs, started = {}, {}, time.time()
        for i, arch in enumerate(chunk):
            runners[i], costs[i] = _runner(space, arch, settings, workdir / f"arch{i}.onnx")
        if reference is not None:
            runners["reference"] = reference
        cpu: dict[object, list[float]] = {}
        times = time_interleaved(runners, settings.warmup, settings.runs, False, "", cpu_times=cpu)
        done += len(chunk)
        if chunk_lines:
            write(f"timing architectures: {done}/{len(archs)} timed (this chunk of {len(chunk)}: "
                  f"{time.time() - started:.1f} s)", file=sys.stderr)
        for i, arch in enumerate(chunk):
            bar.update(1)
            record = dict(arch=list(arch), median_ms=float(np.median(times[i])),
                          times_ms=[round(t, 4) for t in times[i]], cpu_median_ms=float(np.median(cpu[i])),
                          cpu_times_ms=[round(t, 4) for t in cpu[i]], params=costs[i].params, macs=costs[i].macs,
                          warmup=settings.warmup, runs=settings.runs, chunk=len(chunk),
                          timed_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)))
            if reference is not None:
                # Round r of every runner ran back to back: the ratio cancels what the machine did then.
                ref = np.asarray(times["reference"])
                record.update(rel_to_ref=float(np.median(np.asarray(times[i]) / ref)),
                              ref_median_ms=float(np.median(ref)))
            yield record
    bar.close()


#: What :func:`latencies` may fit: the wall-clock time (relative to the reference when there is one) or the
#: process's CPU time over the same runs.
CLOCKS = COSTMODEL_CLOCKS


def latencies(records: Sequence[dict], clock: str = "wall") -> tuple[np.ndarray, dict]:
    """The latency (ms) to fit for each record, and how it was obtained.

    ``clock="wall"``: with reference timings, ``rel_to_ref`` × the median of the chunks' reference medians
    (the reference's typical speed over the run); otherwise the raw medians. ``clock="cpu"``: the median
    CPU time of the process over the same runs (``cpu_median_ms``; with one thread, the work done however
    often the run was preempted — what a shared machine's wall clock cannot tell apart from load).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock == "cpu":
        missing = sum("cpu_median_ms" not in r for r in records)
        if missing:
            raise SpaceError(f"{missing} of {len(records)} records have no CPU times (timed before they were "
                             "recorded); time them again into a new directory, or fit the wall-clock times")
        return np.array([r["cpu_median_ms"] for r in records]), dict(target="cpu_median_ms")
    if records and all("rel_to_ref" in r for r in records):
        scale = float(np.median([r["ref_median_ms"] for r in records]))
        return np.array([r["rel_to_ref"] for r in records]) * scale, dict(target="rel_to_ref", reference_ms=scale)
    if any("rel_to_ref" in r for r in records):
        raise SpaceError("records mix reference-relative and raw timings; use one directory per setting")
    return np.array([r["median_ms"] for r in records]), dict(target="median_ms")


def sample(space: ArchSpace, out_dir: str | os.PathLike, n: int, seed: int = 0,
           settings: TimingSettings = TimingSettings(), extra: dict[str, Sequence[str]] | None = None,
           progress: bool = True) -> dict:
    """Time architectures 0…n-1 of the cost model's random sequence ``seed`` (:meth:`~ArchSpace.cost_sample`:
    uniform, and in a space with a ``cheap_share`` that share drawn toward the cheap end, recorded as
    ``draw``), plus the space's ``always_time`` models and the named ``extra`` ones, into ``out_dir``,
    skipping every architecture already there. Returns counts and the wall time."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _open_directory(space, out_dir, settings)
    _prepare_append(out_dir / RECORDS_FILE)
    # by model, not by spelling: a record may name an architecture other than canonically (an older name)
    done = {space.canonical(r["arch"]) for r in read_records(out_dir, space)}
    todo: list[tuple[tuple[str, ...], dict]] = []
    named = {name: space.load_arch(name) for name in space.always_time}
    for name, arch in {**named, **(extra or {})}.items():
        arch = space.validate(arch)
        if arch not in done:
            todo.append((arch, dict(name=name)))
            done.add(arch)
    for index in range(n):
        arch, draw = space.cost_sample(seed, index)
        if arch not in done:
            todo.append((arch, dict(seed=seed, index=index, **(dict(draw=draw) if space.cheap_share else {}))))
            done.add(arch)
    start = time.perf_counter()
    labels = dict(todo)
    path = out_dir / RECORDS_FILE
    # closing: an interrupt between two records removes the exports now, not when the generator is collected
    with closing(time_archs(space, [a for a, _ in todo], settings, progress)) as records:
        for record in records:
            append_jsonl(path, {**labels[tuple(record["arch"])], **record})
    return dict(timed=len(todo), on_disk=len(read_records(out_dir)), seconds=time.perf_counter() - start,
                settings=asdict(settings))
