"""Regenerate the activation table in README.md from the catalog.

Run: python -m fastact.devtools.gen_readme [--check]
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

from fastact.catalog import ENTRIES  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- activations:start -->", "<!-- activations:end -->"


def table():
    lines = [
        "| function | y = f(x) | dy/dx | parameters | backward_from_output |",
        "|---|---|---|---|---|",
    ]
    for e in ENTRIES:
        params = ", ".join(f"`{p.name}={p.default:g}`" for p in e.params)
        params += "".join(f"`{k}={'|'.join(map(repr, v))}`" for k, v in e.choices.items())
        name = f"`{e.name}`" + "".join(f" (alias `{a}`)" for a in e.aliases)
        grad_y = f"`{e.grad_y_formula}`" if e.grad_y is not None else "-"
        lines.append(f"| {name} | `{e.formula}` | `{e.grad_formula}` | {params or '-'} | {grad_y} |")
    return "\n".join(lines)


def render(text):
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else "README.md's activation table is stale: run python -m fastact.devtools.gen_readme")
    README.write_text(new)
    print(f"wrote {README}")
