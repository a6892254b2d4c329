"""Start-up time of the command line: wall time of a fresh process, median of N interleaved rounds.

Times ``repghost --help``, ``repghost train --help``, a usage error, ``repghost models`` and
``python -c "import repghost"``, each a new process (interpreter start included). A command is the
``repghost`` script next to this Python when there is one (else ``python -m repghost``).

``--src LABEL=DIR`` (repeatable) times the package found in ``DIR`` (put first on ``PYTHONPATH``),
e.g. a checkout of an older commit beside the working tree, so two versions are compared in one run:
each round runs every (version, command) once in a shuffled order, so drift in the machine's load
hits them all alike. Records the load average before and after. Writes ``results/startup.json``
(or ``--out``).

    python benchmarks/startup.py --runs 5
    mkdir /tmp/before && git archive <commit> src | tar -x -C /tmp/before
    python benchmarks/startup.py --src before=/tmp/before/src --src after=src --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path


def repghost_command() -> list[str]:
    script = Path(sys.executable).parent / "repghost"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "repghost"]


def commands() -> dict[str, tuple[list[str], int]]:
    """Name → (argv, the exit code it must give): a wrong exit code means the timing is of the wrong thing."""
    cli = repghost_command()
    return {
        "repghost --help": (cli + ["--help"], 0),
        "repghost train --help": (cli + ["train", "--help"], 0),
        "repghost bench --threads 0 (usage error)": (cli + ["bench", "--threads", "0"], 2),
        "repghost models": (cli + ["models"], 0),
        'python -c "import repghost"': ([sys.executable, "-c", "import repghost"], 0),
    }


def environment_for(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(src).resolve()), env.get("PYTHONPATH")) if p)
    return env


def time_once(argv: list[str], expected: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != expected:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}, expected {expected}:\n{done.stderr}")
    return seconds


def parse_src(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not Path(path, "repghost", "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR with DIR/repghost/__init__.py, got {text!r}")
    return label, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds; each command runs once per round (default 5)")
    parser.add_argument("--src", type=parse_src, action="append", default=[], metavar="LABEL=DIR",
                        help="time the package in DIR under LABEL (repeatable; default: the importable one)")
    parser.add_argument("--seed", type=int, default=0, help="shuffles the order within each round")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "startup.json")
    args = parser.parse_args()

    versions = {label: environment_for(path) for label, path in args.src} or {"current": environment_for(None)}
    table = commands()
    cases = [(label, name) for label in versions for name in table]
    for label, name in cases:  # warm the file cache, and fail early on a wrong command
        time_once(*table[name], versions[label])
    load_before = os.getloadavg()
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    rng = random.Random(args.seed)
    for _ in range(args.runs):
        rng.shuffle(cases)
        for label, name in cases:
            times[label, name].append(time_once(*table[name], versions[label]))
    load_after = os.getloadavg()

    rows = [dict(version=label, command=name, median_s=statistics.median(t), min_s=min(t), max_s=max(t), runs=t)
            for (label, name), t in sorted(times.items(), key=lambda kv: (list(table).index(kv[0][1]), kv[0][0]))]
    print(f"{'command':<44} {'version':<10} {'median s':>9} {'min s':>7} {'max s':>7}")
    for r in rows:
        print(f"{r['command']:<44} {r['version']:<10} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} CPUs")

    env = dict(python=platform.python_version(), cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
               runs=args.runs, command=" ".join(repghost_command()), versions=dict(args.src),
               load_before=load_before, load_after=load_after, date=time.strftime("%Y-%m-%d %H:%M"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(env=env, results=rows), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
