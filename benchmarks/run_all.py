"""``make bench``: every benchmark, one after the other, then one Markdown summary of their tables.

    python benchmarks/run_all.py            # the full set (about half an hour on a 2-core CPU)
    python benchmarks/run_all.py --quick    # every script in its quick mode (a couple of minutes)

Each script writes its JSON to benchmarks/results/; the summary goes to
benchmarks/results/summary.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "data_pipeline.py",
    "training.py",
    "evaluation.py",
    "precision.py",
    "large_images.py",
    "inference.py",
    "gpu.py",
    "decoders.py",
    "memory.py",
    "profile_training.py",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each script's quick mode")
    parser.add_argument(
        "--results", default=str(HERE / "results"), help="folder for the JSON files"
    )
    args = parser.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    sections = []
    for script in SCRIPTS:
        name = script.removesuffix(".py")
        out = results / f"{name}.json"
        command = [sys.executable, str(HERE / script), "--out", str(out)]
        if args.quick:
            command.append("--quick")
        print(f"== {' '.join(command[1:])}", flush=True)
        status = subprocess.run(command).returncode
        if status != 0:
            print(f"{script} failed with status {status}", file=sys.stderr)
            return status
        sections.append(f"## {name}\n\n{out.with_suffix('.md').read_text(encoding='utf-8')}")
    summary = results / "summary.md"
    summary.write_text("# Benchmark results\n\n" + "\n".join(sections), encoding="utf-8")
    print(f"wrote {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
