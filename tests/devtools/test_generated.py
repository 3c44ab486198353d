"""Generated files are in sync with the catalog."""

import pathlib
import subprocess
import sys

import mpmath  # noqa: F401  (gen_rootpolys, gen_vmath and gen_gelu32 need it: in the test extra)

from fastact.catalog import ENTRIES

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _check(module):
    r = subprocess.run([sys.executable, "-m", f"fastact.devtools.{module}", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_table_is_current():
    _check("gen_readme")


def test_rootpolys_are_current():
    _check("gen_rootpolys")


def test_vmath_coefficients_are_current():
    _check("gen_vmath")


def test_gelu32_coefficients_are_current():
    _check("gen_gelu32")


def test_every_entry_with_a_root_has_a_polynomial():
    from fastact.scalar.generated.rootpolys import ROOTS

    assert {e.name for e in ENTRIES if e.grad_root is not None} == set(ROOTS)


def test_readme_first_screen_has_the_two_commands():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:25])
    assert 'pip install -e ".[test]" && python -m fastact bench' in head
    assert 'pip install -e ".[test]" && pytest' in head


def test_accuracy_doc_lists_every_entry():
    text = (ROOT / "docs" / "accuracy.md").read_text()
    for e in ENTRIES:
        assert f"| {e.name} |" in text


def test_readme_architecture_names_every_module():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Architecture", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    pkg = ROOT / "fastact"
    missing = [p.relative_to(ROOT).as_posix() for p in pkg.rglob("*.py")
               if p.name != "__init__.py" and p.name not in block]
    missing += [d.name + "/" for d in pkg.iterdir() if d.is_dir() and (d / "__init__.py").exists()
                and d.name + "/" not in block]
    assert not missing, f"README.md's Architecture tree does not name {missing}: add one line each"


def test_guarantees_doc_links_only_to_tests_that_exist():
    """docs/guarantees.md proves each statement with a link to a test: every
    ``tests/...py::name`` it names is a test function (or class) defined in that file,
    and every section but "Undefined" names at least one."""
    import ast
    import re

    text = (ROOT / "docs" / "guarantees.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert sections, "docs/guarantees.md has no sections"
    link = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
    # "Undefined" lists what is not promised: nothing there to prove
    bare = [s.splitlines()[0] for s in sections if not link.search(s) and not s.startswith("Undefined")]
    assert not bare, f"sections without a test link: {bare}"
    defined = {}
    missing = []
    for path, name in link.findall(text):
        if path not in defined:
            f = ROOT / path
            tree = ast.parse(f.read_text()) if f.exists() else ast.Module(body=[], type_ignores=[])
            defined[path] = {n.name for n in ast.walk(tree)
                             if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if name not in defined[path]:
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/guarantees.md links to tests that do not exist: {missing}"
