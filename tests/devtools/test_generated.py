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
