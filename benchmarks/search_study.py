"""Issue 17's result: does the evolutionary search over the super-network find SSDLite backbones better than
RepGhostNet 0.5× and than random search, at RepGhostNet 0.5×'s latency — and do its controls do worse?

Run in resumable stages (every stage can be stopped and run again; it redoes nothing finished):

1. ``search``: ``repghost evolve`` (library: :func:`repghost.search.evolution.run_evolution`) for each
   kind × search seed into ``OUT/<kind>-s<seed>/``, the found architecture copied to
   ``OUT/archs/<kind>_s<seed>.json``. Kinds: ``evolution`` (the super-network's score), ``random`` (random
   search over the same score, same number of scored architectures), ``shuffled`` (evolution on a score
   with no information), ``latency`` (evolution on −|c/T − 1| alone).
2. ``pick-random``: the issue's random-search control. Every random architecture of the fidelity study (uniform
   draws within ±3 % of the target, trained stand-alone) is evaluated on the benchmark's *search* split;
   the best by mean search-split AP over its seeds is the pick, linked for training as ``OUT/archs``.
3. ``link``: the finished runs of the reference (``--reference``, found in ``--reference-from``'s runs, by
   default the fidelity study's) and of the random pick are linked into ``OUT/runs`` (same settings: not
   trained again).
4. train and time with the study command (one ``--seeds`` per process; two processes may share ``OUT``)::

       repghost study detection --archs repghostnet_050 OUT/archs/*.json --seeds 0 1 2 --out OUT \\
           --benchmark runs/det-benchmark

5. ``report``: the table (test AP mean ± SE over training seeds, body latency from the study's one
   interleaved run), the median architecture of the search seeds against the reference and the random
   pick, the controls, the search seeds' agreement on layer choices against chance, the proxy-level
   comparison with random search, and an AP-vs-latency plot, to ``--results``.
6. ``fresh-test``: every finished run evaluated again on a fresh test split no choice has seen.

``--measured-band`` runs the searches held to the reference's *measured* latency (``repghost evolve
--measured-band``: every candidate timed before it is scored); ``measure`` and ``random-measured`` are the
measured pick of finished searches and random search in the measured band.

``rerank-candidates`` and ``rerank-pick`` re-rank each measured-band search's best-scored architectures by one
stand-alone run each, judged on the benchmark's *search* split (the super-network's score orders the searches'
picks poorly): the candidates to ``--rerank``/candidates, trained with ``study detection --seeds 0``, then the
best per search to ``--rerank``/archs, for the study command with seeds 0 1 2. ``proxy-top``: how well the
super-network's score orders the picks of several studies of one target (Kendall τ, bootstrap interval).

Successive halving over stand-alone runs (a short run's training loss ranks the searches' best where the
super-network's score does not: ``rung-fidelity`` measures it on finished runs): ``halving-admit`` times each
search's ``--top`` best-scored architectures again with the reference and admits those within
``--admit-tolerance``; ``study detection --archs RERANK/admitted/*.json --seeds 0 --stop-after-epoch K`` trains
them to epoch K of the recipe; ``halving-promote`` keeps each search's ``--promote`` lowest losses at epoch K;
``study detection --archs RERANK/promoted/*.json --seeds 0`` finishes those runs; ``rerank-pick`` then chooses
among the promoted ones by search-split AP.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
from pathlib import Path

import numpy as np

from repghost.io import atomic_write_json
from repghost.models.repghostnet_space import RepGhostNetSpace

SPACE = RepGhostNetSpace()
KINDS = {"evolution": dict(strategy="evolution", quality="supernet"),
         "random": dict(strategy="random", quality="supernet"),
         "shuffled": dict(strategy="evolution", quality="shuffled"),
         "latency": dict(strategy="evolution", quality="latency")}
REFERENCE = "repghostnet_050"  # the first target's model; the second target's is mobiledet_cpu


def search_config(args, kind: str, seed: int, **measure):
    """The study's search of ``kind`` with ``seed`` (and, for the measure stage, its measured pick); with
    ``--measured-band``, held to the reference's measured latency while it searches."""
    from repghost.search.evolution import EvolutionConfig

    gate = (dict(measured_band=args.reference, prefilter=args.prefilter, timing_repeats=args.timing_repeats)
            if args.measured_band else {})
    return EvolutionConfig(output=str(Path(args.out) / f"{kind}-s{seed}"), costmodel=args.costmodel,
                           target_ms=args.target_ms, supernet=args.supernet, seed=seed, threads=1,
                           population=args.population, parents=args.parents, generations=args.generations,
                           start_from=tuple(args.start_from), **KINDS[kind], **measure, **gate)


def stage_search(args) -> None:
    from repghost.search.evolution import run_evolution

    out = Path(args.out)
    for kind, seed in itertools.product(args.kinds, args.search_seeds):
        result = run_evolution(search_config(args, kind, seed))
        target = out / "archs" / f"{kind}_s{seed}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.output / "arch.json", target)
        print(f"{kind} seed {seed}: score {result.score:.4g} at {result.predicted_ms:.2f} ms "
              f"({result.evaluated} scored) → {target}", flush=True)


def is_finished(run_dir: Path) -> bool:
    """A run whose metrics are of its last epoch."""
    return (run_dir / "metrics.json").is_file() and json.loads((run_dir / "metrics.json").read_text())["epoch"] \
        == json.loads((run_dir / "run.json").read_text())["epochs"]


def finished_runs(study: Path, label: str) -> list[Path]:
    return sorted(p for p in (study / "runs").glob(f"{label}-seed*") if is_finished(p))


def stage_pick_random(args) -> None:
    from repghost.detection.config import DataConfig
    from repghost.detection.engine import evaluate_checkpoint

    study, out = Path(args.fidelity), Path(args.out)
    drawn = json.loads((study / "architectures.json").read_text())
    data = DataConfig(root=args.benchmark, val_split="search")
    rows = []
    for row in drawn["architectures"]:
        search_ap, test_ap = [], []
        for run in finished_runs(study, row["label"]):
            path = run / "eval_search.json"
            if not path.is_file():  # evaluated once, kept beside the run
                evaluate_checkpoint(run / "last.pt", data, batch_size=16, workers=0, output=path, threads=1)
            search_ap.append(json.loads(path.read_text())["bbox"]["AP"])
            test_ap.append(json.loads((run / "metrics.json").read_text())["bbox"]["AP"])
        if not search_ap:
            raise SystemExit(f"{row['label']} has no finished run in {study}: finish the fidelity study first")
        rows.append(dict(label=row["label"], runs=len(search_ap), search_ap=statistics.fmean(search_ap),
                         test_ap=statistics.fmean(test_ap)))
        print(f"{row['label']}: search AP {rows[-1]['search_ap']:.2f}, test AP {rows[-1]['test_ap']:.2f} "
              f"({len(search_ap)} runs)", flush=True)
    pick = max(rows, key=lambda r: r["search_ap"])
    atomic_write_json(out / "random_pick.json", dict(pick=pick["label"], rows=rows))
    (out / "archs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study / "archs" / f"{pick['label']}.json", out / "archs" / f"{pick['label']}.json")
    print(f"random search's pick: {pick['label']} (search AP {pick['search_ap']:.2f})")


def link_runs(study: Path, label: str, out: Path) -> None:
    """Link ``label``'s finished runs in ``study`` into ``out/runs`` (same settings: not trained again)."""
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for run in finished_runs(study, label):
        link = out / "runs" / run.name
        if not link.exists():
            os.symlink(os.path.relpath(run.resolve(), link.parent.resolve()), link)
            print(f"{link} → {run}")


def stage_link(args) -> None:
    out = Path(args.out)
    pick = json.loads((out / "random_pick.json").read_text())["pick"]
    link_runs(Path(args.reference_from or args.fidelity), args.reference, out)
    link_runs(Path(args.fidelity), pick, out)


def stage_measure(args) -> None:
    """The measured pick (:mod:`repghost.search.finalists`) of every finished search and of random search, into
    ``--measured``: each search's scored architectures timed against the reference, best first, 16 at a time, until
    one is within ±3 % of the reference's measured latency. A pick that is the cost-model pick already trained
    keeps its runs (linked), as do the reference and random search's pick."""
    from repghost.search.evolution import run_evolution
    from repghost.search.finalists import MeasuredBandError, MeasureSettings, measured_pick

    out, measured = Path(args.out), Path(args.measured)
    (measured / "archs").mkdir(parents=True, exist_ok=True)
    link_runs(Path(args.reference_from or args.fidelity), args.reference, measured)
    for kind, seed in itertools.product(args.kinds, args.search_seeds):
        result = run_evolution(search_config(args, kind, seed, measure_against=args.reference,
                                             finalists=args.finalists))
        label = f"{kind}_s{seed}"
        atomic_write_json(measured / "archs" / f"{label}.json", SPACE.arch_to_json(result.arch))
        unchanged = SPACE.load_arch(out / "archs" / f"{label}.json") == result.arch
        if unchanged:
            link_runs(out, label, measured)
        rows = result.measured["rows"]
        row = next(r for r in rows if r["arch"] == SPACE.arch_name(result.arch))
        first = rows[0]  # the best score: the cost-model pick
        summary = dict(label=label, pick_score=row["score"], pick_ratio=row["ratio"], best_score=first["score"],
                       best_ratio=first["ratio"], timed=len(rows), rank=rows.index(row) + 1, unchanged=unchanged,
                       finalists=str(out / f"{kind}-s{seed}" / "finalists.json"))
        path = measured / "measure.json"
        kept = json.loads(path.read_text()) if path.is_file() else {}
        atomic_write_json(path, {**kept, label: summary})
        print(f"{label}: measured pick score {row['score']:.4g} (rank {summary['rank']} of the {len(rows)} timed), "
              f"{row['ratio']:.3f}× {args.reference}; the best score {first['score']:.4g} measured "
              f"{first['ratio']:.3f}× ({'the cost-model pick' if unchanged else 'a new pick'})", flush=True)
    # Random search's architectures timed the same way. Its pick stays the equal-compute one (the best of all
    # its draws by search-split AP, whatever its measured latency): held to the measured band it would choose
    # among the few draws that land there, a weaker control than the one the searches are compared with.
    drawn = json.loads((Path(args.fidelity) / "architectures.json").read_text())["architectures"]
    name_of = {r["label"]: r["name"] for r in drawn}
    random_pick = json.loads((out / "random_pick.json").read_text())
    rows = random_pick["rows"]
    try:
        table = measured_pick(measured / "random", [(name_of[r["label"]], r["search_ap"]) for r in rows],
                              MeasureSettings(reference=args.reference, finalists=len(rows)))
    except MeasuredBandError as err:
        table = dict(error=str(err))
    pick = random_pick["pick"]
    atomic_write_json(measured / "random_pick.json", {**random_pick, "measured": table})
    shutil.copyfile(Path(args.fidelity) / "archs" / f"{pick}.json", measured / "archs" / f"{pick}.json")
    link_runs(Path(args.fidelity), pick, measured)
    link_runs(out, pick, measured)
    in_band = [r for r in table.get("rows", []) if r["in_band"]]
    print(f"random search's pick stays {pick}; {len(in_band)} of {len(rows)} random architectures are in the "
          "measured band", flush=True)


def stage_random_measured(args) -> None:
    """Random search held to the *measured* band, at equal compute: uniform draws of the space (pre-filtered by
    the cost model at ±``--draw-tolerance`` of the target, so that few are timed in vain), timed 16 per
    interleaved run with the reference (resumable: ``timings.jsonl``), the first 16 in draw order within ±3 % of
    the reference's measured latency written to ``--random-out``/archs for ``study detection --seeds 0``."""
    from repghost.costmodel.fit import CostModel
    from repghost.search.finalists import MeasuredGate, MeasureSettings
    from repghost.study.fidelity import pick_architectures

    out = Path(args.random_out)
    out.mkdir(parents=True, exist_ok=True)
    _, drawn = pick_architectures(SPACE, CostModel.load(args.costmodel, SPACE), count=args.draws,
                                  tolerance=args.draw_tolerance, seed=args.draw_seed, target_ms=args.target_ms)
    gate = MeasuredGate(out, MeasureSettings(reference=args.reference), progress=True)  # out/timings.jsonl

    def in_band() -> list[dict]:
        return [{**d, **gate.rows[d["name"]], "in_band": True} for d in drawn
                if d["name"] in gate.rows and gate.admits(d["name"])]

    for start in range(0, len(drawn), 16):
        if len(in_band()) >= 16:
            break
        gate([d["name"] for d in drawn[start:start + 16]])  # times only what is not timed yet
        print(f"timed {len(gate.rows)} of {len(drawn)} draws: {len(in_band())} in the measured band", flush=True)
    kept = in_band()[:16]
    (out / "archs").mkdir(exist_ok=True)
    for i, row in enumerate(kept):
        atomic_write_json(out / "archs" / f"random_m{i:02d}.json",
                          SPACE.arch_to_json(SPACE.from_arch_name(row["name"])))
    atomic_write_json(out / "architectures.json", dict(
        target_ms=args.target_ms, reference=args.reference, draw_tolerance=args.draw_tolerance,
        draw_seed=args.draw_seed, timed=len(gate.rows),
        architectures=[{**row, "label": f"random_m{i:02d}"} for i, row in enumerate(kept)]))
    print(f"{len(kept)} random architectures in the measured band (of {len(gate.rows)} timed) → {out / 'archs'}")


def rerank_candidates(out: Path, kind: str, seed: int, top: int | None) -> list[tuple[str, float]]:
    """The ``top`` (None: all) best-scored architectures of ``out``'s search ``kind``-s``seed`` with their scores
    (best first: its pick)."""
    from repghost.io import read_jsonl
    from repghost.search.finalists import ranked

    search = out / f"{kind}-s{seed}"
    if not json.loads((search / "evolution.json").read_text())["settings"].get("measured_band"):
        raise SystemExit(f"{search} was not held to the measured band: its scored architectures are not all in it")
    scores = [(r["arch"], r["score"]) for r in read_jsonl(search / "scores.jsonl")]
    return ranked(scores)[:top]


def stage_rerank_candidates(args) -> None:
    """Each search's ``--top`` best-scored architectures (all in its measured band) to ``--rerank``/candidates,
    for one stand-alone run each: ``repghost study detection --archs RERANK/candidates/*.json --seeds 0``."""
    out, rerank = Path(args.out), Path(args.rerank)
    (rerank / "candidates").mkdir(parents=True, exist_ok=True)
    for kind, seed in itertools.product(args.kinds, args.search_seeds):
        for i, (name, _) in enumerate(rerank_candidates(out, kind, seed, args.top)):
            atomic_write_json(rerank / "candidates" / f"{kind}_s{seed}_c{i}.json",
                              SPACE.arch_to_json(SPACE.from_arch_name(name)))
    print(f"{len(args.kinds) * len(args.search_seeds) * args.top} candidates → {rerank / 'candidates'}")


def candidate_labels(rerank: Path, kind: str, seed: int, top: int) -> list[tuple[int, str]]:
    """(candidate index, label) a pick chooses among: the successive-halving's promoted ones when
    ``RERANK/promoted.json`` is there, else the ``top`` best-scored."""
    promoted = rerank / "promoted.json"
    if promoted.is_file():
        labels = json.loads(promoted.read_text())[f"{kind}_s{seed}"]["promoted"]
        return [(int(label.rsplit("_c", 1)[1]), label) for label in labels]
    return [(i, f"{kind}_s{seed}_c{i}") for i in range(top)]


def stage_halving_admit(args) -> None:
    """Successive halving, step 0: each search's ``--top`` best-scored architectures (to ``--rerank``/candidates)
    timed again as SSDLite bodies with the reference, all in one interleaved run, ``--timing-repeats`` runs; a
    candidate is admitted when its mean ratio is within ±``--admit-tolerance`` (``admission.json``; timed once: a
    second call reads it)."""
    from repghost.search.finalists import MeasureSettings, time_ratios

    out, rerank = Path(args.out), Path(args.rerank)
    path = rerank / "admission.json"
    if not path.is_file():
        stage_rerank_candidates(args)
        labels = {f"{kind}_s{seed}_c{i}": name for kind, seed in itertools.product(args.kinds, args.search_seeds)
                  for i, (name, _) in enumerate(rerank_candidates(out, kind, seed, args.top))}
        settings = MeasureSettings(reference=args.reference, tolerance=args.admit_tolerance,
                                   repeats=args.timing_repeats, finalists=len(labels))
        rows = time_ratios(list(labels.values()), settings)
        table = {label: dict(row, admitted=settings.in_band(row["ratio"]))
                 for label, row in zip(labels, rows, strict=True)}
        atomic_write_json(path, dict(settings=settings.record(), candidates=table), indent=1)
    table = json.loads(path.read_text())["candidates"]
    (rerank / "admitted").mkdir(exist_ok=True)
    for label, row in table.items():
        print(f"{label}: ratio {row['ratio']:.3f} ({', '.join(f'{r:.3f}' for r in row.get('ratios', []))})"
              f"{'' if row['admitted'] else '  — left out'}")
        if row["admitted"]:
            shutil.copyfile(rerank / "candidates" / f"{label}.json", rerank / "admitted" / f"{label}.json")
    print(f"{sum(r['admitted'] for r in table.values())} of {len(table)} admitted → {rerank / 'admitted'}")


def stage_halving_promote(args) -> None:
    """Successive halving, the rung's verdict: each search's admitted candidates ranked by the training loss of
    their seed-0 run in epoch ``--rung-epoch`` (lowest first; ties: the better super-network score); the best
    ``--promote`` to ``--rerank``/promoted (and ``promoted.json``), to be trained to the end, then ``rerank-pick``."""
    rerank = Path(args.rerank)
    table = json.loads((rerank / "admission.json").read_text())["candidates"]
    result = {}
    (rerank / "promoted").mkdir(exist_ok=True)
    for kind, seed in itertools.product(args.kinds, args.search_seeds):
        rows = []
        for label in (label for label in table if label.startswith(f"{kind}_s{seed}_c") and table[label]["admitted"]):
            history = rerank / "runs" / f"{label}-seed0" / "history.json"
            losses = json.loads(history.read_text()) if history.is_file() else []
            if len(losses) < args.rung_epoch:
                raise SystemExit(f"{label} has not reached epoch {args.rung_epoch}: train the rung first "
                                 f"(repghost study detection --stop-after-epoch {args.rung_epoch})")
            rows.append(dict(label=label, loss=losses[args.rung_epoch - 1]["loss"]))
        if not rows:  # the protocol's rule: a search with no admitted candidate has no pick
            result[f"{kind}_s{seed}"] = dict(rung_epoch=args.rung_epoch, ranking=[], promoted=[])
            print(f"{kind}_s{seed}: no candidate admitted by latency — no pick")
            continue
        rows.sort(key=lambda r: (r["loss"], int(r["label"].rsplit("_c", 1)[1])))
        promoted = [r["label"] for r in rows[:args.promote]]
        result[f"{kind}_s{seed}"] = dict(rung_epoch=args.rung_epoch, ranking=rows, promoted=promoted)
        for label in promoted:
            shutil.copyfile(rerank / "candidates" / f"{label}.json", rerank / "promoted" / f"{label}.json")
        print(f"{kind}_s{seed}: " + ", ".join(f"{r['label']} {r['loss']:.4f}" for r in rows) + f" → {promoted}")
    atomic_write_json(rerank / "promoted.json", result, indent=1)


def stage_rerank_pick(args) -> None:
    """Each search's re-ranked pick: its candidates' seed-0 runs evaluated on the benchmark's *search* split, the
    best (ties: the better super-network score, i.e. the earlier candidate) copied to ``--rerank``/archs as the
    search's architecture, its run linked as that label's seed-0 run (same architecture, recipe and seed)."""
    from repghost.detection.config import DataConfig
    from repghost.detection.engine import evaluate_checkpoint

    out, rerank = Path(args.out), Path(args.rerank)
    data = DataConfig(root=args.benchmark, val_split="search")
    (rerank / "archs").mkdir(parents=True, exist_ok=True)
    table = {}
    for kind, seed in itertools.product(args.kinds, args.search_seeds):
        rows = []
        if not candidate_labels(rerank, kind, seed, args.top):
            print(f"{kind}_s{seed}: nothing promoted (no candidate admitted by latency) — no pick", flush=True)
            table[f"{kind}_s{seed}"] = dict(pick=None, candidates=[])
            continue
        scores = [score for _, score in rerank_candidates(out, kind, seed, None)]  # candidate i is the i-th best
        for i, label in candidate_labels(rerank, kind, seed, args.top):
            score = scores[i]
            runs = [r for r in finished_runs(rerank, label) if r.name.endswith("-seed0")]
            if not runs:
                raise SystemExit(f"{label} has no finished seed-0 run in {rerank}: train the candidates first")
            path = runs[0] / "eval_search.json"
            if not path.is_file():  # evaluated once, kept beside the run
                evaluate_checkpoint(runs[0] / "last.pt", data, batch_size=16, workers=0, output=path, threads=1)
            rows.append(dict(label=label, score=score, search_ap=json.loads(path.read_text())["bbox"]["AP"],
                             test_ap=json.loads((runs[0] / "metrics.json").read_text())["bbox"]["AP"]))
        best = max(rows, key=lambda r: (r["search_ap"], -rows.index(r)))
        name = f"{kind}_s{seed}"
        shutil.copyfile(rerank / "candidates" / f"{best['label']}.json", rerank / "archs" / f"{name}.json")
        link = rerank / "runs" / f"{name}-seed0"
        if not link.exists():
            os.symlink(f"{best['label']}-seed0", link)
        table[name] = dict(pick=best["label"], candidates=rows)
        print(f"{name}: " + ", ".join(f"{r['label']} search AP {r['search_ap']:.2f}" for r in rows) +
              f" → {best['label']}", flush=True)
    atomic_write_json(rerank / "rerank.json", table)


def stage_proxy_top(args) -> None:
    """Does the super-network's score order the searches' picks? Every ``evolution_s*`` pick of ``--studies``
    (studies of one target; their searches' ``scores.jsonl`` give the score) with its mean test AP over its
    finished runs; Kendall τ with a bootstrap 95 % interval over the picks, to ``--results``/proxy_at_the_top.json.
    With ``--reranks``, also over every re-rank candidate of those studies (its score against its one run's test
    AP and search-split AP: the best four of each search, where the search makes its choice)."""
    from repghost.io import read_jsonl
    from repghost.study.fidelity import kendall_with_interval

    scores = {}
    for study in map(Path, args.studies):
        for path in study.glob("*-s*/scores.jsonl"):
            scores.update({r["arch"]: r["score"] for r in read_jsonl(path)})
    picks = {}
    for study in map(Path, args.studies):
        for path in sorted((study / "archs").glob("evolution_s*.json")):
            name = SPACE.arch_name(SPACE.load_arch(path))
            runs = finished_runs(study, path.stem)
            if name in scores and len(runs) >= 3 and name not in picks:
                aps = [json.loads((r / "metrics.json").read_text())["bbox"]["AP"] for r in runs]
                picks[name] = dict(study=str(study), label=path.stem, score=scores[name], test_ap=statistics.fmean(aps),
                                   runs=len(aps))
    rows = sorted(picks.values(), key=lambda r: -r["score"])
    tau, low, high = kendall_with_interval([r["score"] for r in rows], [r["test_ap"] for r in rows])
    result = dict(picks=rows, kendall_tau=tau, ci95=[low, high], bootstrap=2000)
    for r in rows:
        print(f"{r['study']}/{r['label']}: score {r['score']:.2f}, test AP {r['test_ap']:.2f}")
    print(f"{len(rows)} picks: Kendall τ {tau:+.2f} (95 % CI {low:+.2f} … {high:+.2f})")
    if args.reranks:
        candidates = [dict(rerank=str(d), search=search, **row) for d in map(Path, args.reranks)
                      for search, entry in json.loads((d / "rerank.json").read_text()).items()
                      for row in entry["candidates"]]
        result["rerank_candidates"] = dict(candidates=candidates)
        for quality in ("test_ap", "search_ap"):
            tau, low, high = kendall_with_interval([c["score"] for c in candidates], [c[quality] for c in candidates])
            result["rerank_candidates"][quality] = dict(kendall_tau=tau, ci95=[low, high])
            print(f"{len(candidates)} re-rank candidates, score vs one run's {quality}: Kendall τ {tau:+.2f} "
                  f"(95 % CI {low:+.2f} … {high:+.2f})")
    atomic_write_json(Path(args.results) / "proxy_at_the_top.json", result)


def runs_by_backbone(studies: list[Path]) -> dict[str, dict]:
    """Every finished run under ``STUDY/runs`` of ``studies``, grouped by backbone (the same architecture under
    other labels, or a run linked into several studies, counts once): {backbone: {labels, seeds: {seed: run}}}."""
    import ast

    found: dict[str, dict] = {}
    for study in studies:
        for run_dir in sorted((study / "runs").glob("*-seed*")):
            if not (run_dir / "history.json").is_file() or not is_finished(run_dir):
                continue
            settings = json.loads((run_dir / "run.json").read_text())
            detector = settings["detector"]
            backbone = (ast.literal_eval(detector) if isinstance(detector, str) else detector)["backbone"]
            entry = found.setdefault(backbone, dict(labels=set(), seeds={}))
            entry["labels"].add(run_dir.name.rsplit("-seed", 1)[0])
            entry["seeds"].setdefault(settings["seed"], dict(
                test_ap=json.loads((run_dir / "metrics.json").read_text())["bbox"]["AP"],
                loss=[e["loss"] for e in json.loads((run_dir / "history.json").read_text())], run=str(run_dir)))
    return found


def stage_rung_fidelity(args) -> None:
    """How well does a *short* stand-alone run rank architectures — the training loss after epoch k of the recipe's
    schedule, one run (seed 0)? Truth: the mean test AP of the same architecture's *other* seeds (so the proxy and
    the truth share no run); every architecture of ``--studies`` with a seed-0 run and at least one other.
    Kendall τ with a bootstrap 95 % interval for k = 1 … epochs, beside the seed-0 run's own final test AP (what one
    full run can tell), for all of them and for the searches' candidates alone (labels ``evolution*``, the
    reference and the random pick: where a search makes its choice), to ``--results``/rung_fidelity.json."""
    from repghost.study.fidelity import kendall_with_interval

    studies = [Path(d) for d in args.studies]
    found = runs_by_backbone(studies)
    picks = {json.loads(path.read_text())["pick"] for path in (d / "random_pick.json" for d in studies)
             if path.is_file()}
    at_top = ("evolution", args.reference, *picks)
    groups = {"all": [], "searched": []}
    for _, entry in sorted(found.items()):
        others = [run["test_ap"] for seed, run in entry["seeds"].items() if seed != 0]
        if 0 not in entry["seeds"] or not others:
            continue
        row = dict(labels=sorted(entry["labels"]), truth=statistics.fmean(others), other_seeds=len(others),
                   seed0_test_ap=entry["seeds"][0]["test_ap"], seed0_loss=entry["seeds"][0]["loss"])
        groups["all"].append(row)
        if any(label.startswith(at_top) for label in entry["labels"]):
            groups["searched"].append(row)
    result = {}
    for group, rows in groups.items():
        epochs = min(len(r["seed0_loss"]) for r in rows)
        truth = [r["truth"] for r in rows]
        taus = {"seed0_test_ap": kendall_with_interval([r["seed0_test_ap"] for r in rows], truth)}
        for k in range(1, epochs + 1):
            taus[f"loss_epoch{k}"] = kendall_with_interval([-r["seed0_loss"][k - 1] for r in rows], truth)
        result[group] = dict(architectures=len(rows), truth_range=[min(truth), max(truth)], rows=rows,
                             kendall_tau={name: dict(tau=t, ci95=[lo, hi]) for name, (t, lo, hi) in taus.items()})
        print(f"{group}: {len(rows)} architectures, truth (mean test AP of seeds ≠ 0) "
              f"{min(truth):.1f}–{max(truth):.1f}")
        for name, (t, lo, hi) in taus.items():
            print(f"  {name:<14} τ {t:+.3f} (95 % CI {lo:+.3f} … {hi:+.3f})")
    atomic_write_json(Path(args.results) / "rung_fidelity.json", dict(studies=args.studies, **result), indent=1)


def compare(row: dict, other: dict) -> dict:
    """``row``'s mean AP against ``other``'s by the study's rule: "beats" is a higher mean; "clearly" when the
    difference exceeds 2 SE of the difference, SE = √(SE₁² + SE₂²)."""
    diff = row["ap_mean"] - other["ap_mean"]
    se = float(np.hypot(row["ap_se"], other["ap_se"]))
    word = ("clearly beats" if diff > 2 * se else "beats, within 2 SE," if diff > 0 else
            "does not beat" if diff > -2 * se else "is clearly below")
    return dict(difference=diff, se=se, verdict=word)


def median_arch(rows: dict, labels: list[str]) -> str:
    """The median of ``labels`` by mean AP; the lower median for an even count: never the better one."""
    return sorted(labels, key=lambda label: rows[label]["ap_mean"])[(len(labels) - 1) // 2]


def stage_fresh_test(args) -> None:
    """Every finished run of ``OUT`` (its ``last.pt``) evaluated on a *fresh* test split: the test split of the
    benchmark generator with ``--fresh-seed`` (same image size, object counts and sizes; ``--fresh-images``
    images), which no search, pick or earlier table has touched. Each run's metrics are kept beside it
    (``eval_fresh<seed>.json``: resumable); the per-architecture table and the median search seed's comparisons,
    by the report's rule, go to ``OUT/fresh_test.json``."""
    from repghost.detection.config import DataConfig
    from repghost.detection.engine import evaluate_checkpoint
    from repghost.detection.synthetic import make_detection_benchmark
    from repghost.study.detection import summarize

    out = Path(args.out)
    root = make_detection_benchmark(args.fresh_root, num_train=1, num_search=1, num_test=args.fresh_images,
                                    seed=args.fresh_seed)
    data = DataConfig(root=str(root), val_split="test")
    table = json.loads((out / "detection.json").read_text())
    rows = {}
    for row in table["rows"]:
        fresh = []
        for run in finished_runs(out, row["arch"]):
            path = run / f"eval_fresh{args.fresh_seed}.json"
            if not path.is_file():
                evaluate_checkpoint(run / "last.pt", data, batch_size=16, workers=0, output=path, threads=1)
            fresh.append(json.loads(path.read_text())["bbox"]["AP"])
        stats = summarize(fresh)
        rows[row["arch"]] = dict(arch=row["arch"], ap_mean=stats["mean"], ap_se=stats["se"],
                                 ap_runs=[round(v, 2) for v in fresh], test_ap_mean=row["ap_mean"])
        print(f"{row['arch']}: fresh test AP {stats['mean']:.2f} ± {stats['se'] or 0:.2f} "
              f"({', '.join(f'{v:.1f}' for v in fresh)}); protocol test AP {row['ap_mean']:.2f}", flush=True)
    pick = json.loads((out / "random_pick.json").read_text())["pick"]
    med = median_arch(rows, [label for label in rows if label.startswith("evolution_s")])
    comparisons = {other: compare(rows[med], rows[other]) for other in (args.reference, pick)}
    for other, c in comparisons.items():
        print(f"fresh test split: median search seed {med} {c['verdict']} {other} ({c['difference']:+.2f} ± "
              f"{c['se']:.2f} AP)")
    atomic_write_json(out / "fresh_test.json", dict(benchmark=str(root), seed=args.fresh_seed,
                                                    images=args.fresh_images, rows=list(rows.values()),
                                                    median=med, comparisons=comparisons))


def chance_agreement(draws: list[tuple[str, ...]], k: int) -> list[float]:
    """The agreement of every ``k``-subset of in-band uniform draws: what chance gives."""
    from repghost.search.evolution import agreement

    return [agreement(SPACE, list(c)) for c in itertools.combinations(draws, k)]


def stage_report(args) -> None:
    from repghost.search.evolution import agreement

    out, results, ref = Path(args.out), Path(args.results), args.reference
    table = json.loads((out / "detection.json").read_text())
    rows = {r["arch"]: r for r in table["rows"]}
    pick = json.loads((out / "random_pick.json").read_text())
    groups = {kind: sorted(label for label in rows if label.startswith(f"{kind}_s")) for kind in KINDS}
    lines, data = [], dict(rows=table["rows"], random_pick=pick, groups=groups)

    def describe(label: str) -> str:
        r = rows[label]
        return f"{label}: {r['ap_mean']:.2f} ± {r['ap_se']:.2f} AP ({r['seeds']} seeds), {r['median_ms']:.2f} ms"

    lines.append("| architecture | kind | test AP mean ± SE | AP per seed | body ms |")
    lines.append("|---|---|---|---|---|")
    for label, r in rows.items():
        kind = next((k for k, labels in groups.items() if label in labels), "reference" if label == ref
                    else "random pick")
        lines.append(f"| {label} | {kind} | {r['ap_mean']:.2f} ± {r['ap_se']:.2f} | "
                     f"{', '.join(f'{v:.1f}' for v in r['ap_runs'])} | {r['median_ms']:.2f} |")
    verdicts = {}
    reference, random_pick = rows[ref], rows[pick["pick"]]
    for kind, labels in groups.items():
        if not labels:
            continue
        med = median_arch(rows, labels)
        verdicts[kind] = dict(median=med, ap_mean=rows[med]["ap_mean"], ap_se=rows[med]["ap_se"],
                              latency_ratio=rows[med]["median_ms"] / reference["median_ms"])
        comparisons = []
        for name, other in ((ref, reference), (pick["pick"], random_pick)):
            c = verdicts[kind][name] = compare(rows[med], other)
            comparisons.append(f"{c['verdict']} {name} ({c['difference']:+.2f} ± {c['se']:.2f} AP)")
        lines.append(f"\n{kind}: median of {len(labels)} search seed(s) is {describe(med)} "
                     f"({verdicts[kind]['latency_ratio']:.2f}× {ref}'s latency in the same run); it "
                     + "; ".join(comparisons) + f". ({ref}: {describe(ref).split(': ', 1)[1]}; random "
                     f"pick: {describe(pick['pick'])}. Rule: beats = higher mean test AP; clearly = by more than "
                     "2 SE of the difference, SE = √(SE₁² + SE₂²).)")
    fidelity = json.loads((Path(args.fidelity) / "architectures.json").read_text())
    uniform = [SPACE.from_arch_name(r["name"]) for r in fidelity["architectures"]]
    for kind, labels in groups.items():
        if len(labels) < 2:
            continue
        archs = [SPACE.load_arch(out / "archs" / f"{label}.json") for label in labels]
        observed = agreement(SPACE, archs)
        chance = chance_agreement(uniform, len(archs))
        share = float(np.mean([c >= observed for c in chance]))
        data.setdefault("agreement", {})[kind] = dict(observed=observed, chance_mean=float(np.mean(chance)),
                                                      share_of_chance_at_least=share)
        lines.append(f"\n{kind}: the {len(archs)} search seeds agree on {observed:.1%} of the decisions both use "
                     f"(pairwise mean); {len(archs)} uniform draws in the band agree on {np.mean(chance):.1%} "
                     f"(all {len(chance)} subsets of the fidelity study's 16); {share:.1%} of those subsets agree "
                     "as much or more.")
    proxy = {}
    for kind in ("evolution", "random"):
        for path in sorted(out.glob(f"{kind}-s*/evolution.json")):
            history = json.loads(path.read_text())["history"]
            proxy.setdefault(kind, []).append(history[-1]["best_score"])
    if proxy:
        data["proxy_best"] = proxy
        lines.append("\nbest super-network score found (search split AP), per search seed: " +
                     "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in proxy.items()))
    gated = {}
    for path in sorted(out.glob("evolution-s*/evolution.json")):
        search = json.loads(path.read_text())
        if search["settings"].get("measured_band"):  # held to the measured band while it searched
            last = search["history"][-1]
            gated[path.parent.name] = dict(best_ratio=last["best_ratio"], timed=last["timed"],
                                           scored=last["evaluated"])
    if gated:
        data["measured_band"] = gated
        lines.append(f"\nmeasured band (every candidate timed against {ref} before it was scored): " + "; ".join(
            f"{name} timed {g['timed']} for {g['scored']} scored, its pick at {g['best_ratio']:.3f}× in its "
            "gate's run" for name, g in gated.items()))
    measure_path = out / "measure.json"
    if measure_path.is_file():  # the measure stage's study: how far each pick is from its search's best score
        data["measured_picks"] = measure = json.loads(measure_path.read_text())
        lines.append(f"\nmeasured pick (best score within ±3 % of {ref}'s measured latency; its rank among the "
                     "search's scored architectures timed best first) vs the search's best score (its measured "
                     "ratio): " + "; ".join(
                         f"{m['label']} {m['pick_score']:.2f} at {m['pick_ratio']:.3f}× (rank {m['rank']}) vs "
                         f"{m['best_score']:.2f} at {m['best_ratio']:.3f}×" for m in measure.values()))
    data["verdicts"] = verdicts
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "search_study.json", data)
    (results / "search_study.md").write_text("\n".join(lines) + "\n")
    plot(rows, groups, ref, pick["pick"], results / "search_study.png")
    print("\n".join(lines))


def plot(rows: dict, groups: dict, reference: str, pick: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = {"evolution": "C0", "random": "C4", "shuffled": "C1", "latency": "C2"}
    for kind, labels in groups.items():
        for i, label in enumerate(labels):
            r = rows[label]
            ax.errorbar(r["median_ms"], r["ap_mean"], yerr=r["ap_se"], fmt="o", capsize=3, color=colors[kind],
                        label=f"{kind} search" if i == 0 else None)
    for label, color, name in ((reference, "C3", reference), (pick, "k", "random pick")):
        r = rows[label]
        ax.errorbar(r["median_ms"], r["ap_mean"], yerr=r["ap_se"], fmt="s", capsize=3, color=color, label=name)
    ax.set_xlabel("SSDLite body latency, ms (one interleaved run)")
    ax.set_ylabel("test AP, mean ± SE over training seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["search", "pick-random", "link", "measure", "random-measured", "report",
                                     "fresh-test", "rerank-candidates", "rerank-pick", "proxy-top", "rung-fidelity",
                                     "halving-admit", "halving-promote"])
    p.add_argument("--out", default="runs/search-study")
    p.add_argument("--fidelity", default="runs/fidelity", help="the fidelity study's directory")
    p.add_argument("--benchmark", default="runs/det-benchmark")
    p.add_argument("--costmodel", default="runs/costmodel_repghostnet_cpu_nnls.json")
    p.add_argument("--supernet", default="runs/fidelity-supernet/supernet.pt")
    p.add_argument("--reference", default=REFERENCE, help="the hand-designed model the target latency is of")
    p.add_argument("--reference-from", help="the study whose runs/ holds the reference's finished runs "
                   "(default: --fidelity)")
    p.add_argument("--target-ms", type=float, default=4.62,
                   help="the reference's measured latency in the cost model's unit (repghostnet_050's: 4.62)")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=["evolution"])
    p.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--start-from", nargs="+", default=[], help="search: architectures the first population "
                   "starts with (repghost evolve --start-from)")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--results", default="benchmarks/results/search_study")
    p.add_argument("--measured", default="runs/search-study-measured",
                   help="the measure stage's study directory (its picks in archs/, linked runs in runs/)")
    p.add_argument("--random-out", default="runs/random-measured", help="random-measured's study directory")
    p.add_argument("--draws", type=int, default=160, help="random-measured: uniform draws in the pre-filter band")
    p.add_argument("--draw-tolerance", type=float, default=0.10, help="random-measured: the cost model's pre-filter")
    p.add_argument("--draw-seed", type=int, default=1, help="random-measured: the draws' seed")
    p.add_argument("--measured-band", action="store_true", help="search/measure: every candidate timed against "
                   "--reference before it is scored, scored only within ±3 %% of its measured latency")
    p.add_argument("--prefilter", type=float, default=0.10, help="with --measured-band: the cost model's pre-filter")
    p.add_argument("--timing-repeats", type=int, default=1, help="with --measured-band: independent interleaved "
                   "runs per timed candidate (mean ratio)")
    p.add_argument("--finalists", type=int, default=16, help="best-scored architectures per search the measure "
                   "stage times")
    p.add_argument("--fresh-root", default="runs/det-benchmark-fresh", help="fresh-test: the fresh benchmark")
    p.add_argument("--fresh-seed", type=int, default=1, help="fresh-test: its generator seed (the protocol's is 0)")
    p.add_argument("--fresh-images", type=int, default=512, help="fresh-test: its test images")
    p.add_argument("--rerank", default="runs/search-study-rerank", help="rerank-*: the re-rank's study directory")
    p.add_argument("--top", type=int, default=4, help="rerank-*: best-scored architectures per search re-ranked")
    p.add_argument("--studies", nargs="+", default=[],
                   help="proxy-top, rung-fidelity: the studies (one target) whose picks / runs to rank")
    p.add_argument("--reranks", nargs="+", default=[], help="proxy-top: re-rank directories whose candidates to rank")
    p.add_argument("--admit-tolerance", type=float, default=0.02, help="halving-admit: the band a candidate's mean "
                   "ratio to the reference must be in (the study's is ±3 %%: a margin for the timing's drift)")
    p.add_argument("--rung-epoch", type=int, default=3, help="halving-promote: the epoch whose training loss ranks")
    p.add_argument("--promote", type=int, default=3, help="halving-promote: candidates per search trained to the end")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    {"search": stage_search, "pick-random": stage_pick_random, "link": stage_link, "measure": stage_measure,
     "random-measured": stage_random_measured, "report": stage_report, "fresh-test": stage_fresh_test,
     "rerank-candidates": stage_rerank_candidates, "rerank-pick": stage_rerank_pick, "proxy-top": stage_proxy_top,
     "rung-fidelity": stage_rung_fidelity, "halving-admit": stage_halving_admit,
     "halving-promote": stage_halving_promote}[
        args.stage](args)


if __name__ == "__main__":
    main()
