"""Plot one asv benchmark over the commits of main, from .asv/results (PNG).

Run after `asv run ...`:  python -m fastact.devtools.plot_asv [--bench NAME] [--out PATH]
Default: ElementwiseThroughput.track_gbps, float32 forward of a few ops,
written to docs/asv_history.png. Needs the plot extra (matplotlib).
"""

import argparse
import itertools
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(results_dir, bench):
    """{commit: {param tuple: value}} for ``bench`` over every results file."""
    out = {}
    for path in results_dir.glob("*/*.json"):
        if path.name in ("machine.json", "benchmarks.json"):
            continue
        d = json.loads(path.read_text())
        res = d.get("results", {}).get(bench)
        if not res:
            continue
        cols = d["result_columns"]
        values = res[cols.index("result")]
        params = res[cols.index("params")]
        combos = [tuple(p.strip("'") for p in c) for c in itertools.product(*params)]
        out.setdefault(d["commit_hash"], {}).update(
            {c: v for c, v in zip(combos, values) if v is not None and v == v}
        )
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default="benchmarks.ElementwiseThroughput.track_gbps")
    p.add_argument("--select", default="forward,float32", help="params every plotted line must contain")
    p.add_argument("--out", default=str(ROOT / "docs" / "asv_history.png"))
    a = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load(ROOT / ".asv" / "results", a.bench)
    order = subprocess.run(
        ["git", "rev-list", "--reverse", "main"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    commits = [c for c in order if c in data]
    if not commits:
        raise SystemExit(f"no results for {a.bench}: run asv first")
    want = [s for s in a.select.split(",") if s]
    lines = sorted({k for c in commits for k in data[c] if all(w in k for w in want)})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key in lines:
        xs = [i for i, c in enumerate(commits) if key in data[c]]
        ax.plot(xs, [data[commits[i]][key] for i in xs], marker="o", label=" ".join(key))
    ax.set_xticks(range(len(commits)), [c[:7] for c in commits], rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_xlabel("commit on main (oldest left)")
    ax.set_ylabel(a.bench.rsplit(".", 1)[-1])
    ax.set_title(f"{a.bench} ({', '.join(want)}), asv --quick")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out} ({len(commits)} commits, {len(lines)} lines)")


if __name__ == "__main__":
    main()
