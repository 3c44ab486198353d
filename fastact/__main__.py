"""Command line: ``python -m fastact bench [--quick] [--json] [--ops a,b] ...`` and
``python -m fastact info [--json]``."""

import sys

USAGE = "usage: python -m fastact bench [--help] | info [--json]"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "bench":
        from fastact.bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv[0] == "info":
        from fastact.info import main as info_main

        return info_main(argv[1:])
    print(f"unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
