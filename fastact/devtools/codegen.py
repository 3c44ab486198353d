"""Shared pieces of the code generators in fastact/devtools/."""


def horner(coeffs, var, fmt=repr):
    """Python source of the polynomial (highest degree first) in Horner form,
    written out so that Numba compiles straight-line code; each step is a
    ``muladd`` (fused where the target has FMA: one instruction, one rounding).
    ``fmt`` renders a coefficient (``str`` for coefficients given as source)."""
    expr = fmt(coeffs[0])
    for c in coeffs[1:]:
        expr = f"muladd({var}, {expr}, {fmt(c)})"
    return expr


def write_or_check(path, text, argv):
    """Write ``text`` to ``path``, or with --check exit non-zero if it differs."""
    import sys

    if "--check" in argv:
        sys.exit(0 if path.read_text() == text else f"{path.name} is stale: run the generator")
    path.write_text(text)
    print(f"wrote {path}")


def log_q(z):
    """mpmath target of the log1p polynomial of both math layers: T(z)/z with
    2 atanh(s) = 2s + s T(s^2), T(z) = sum_{n>=1} 2 z^n / (2n+1)."""
    import mpmath as mp

    if z == 0:
        return mp.mpf(2) / 3
    s = mp.sqrt(z)
    return (2 * mp.atanh(s) - 2 * s) / (s * z)
