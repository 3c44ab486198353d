"""Developer tools: accuracy measurement and the generators of coefficient
files and docs, run as ``python -m fastact.devtools.<tool>`` (each with
``--check`` where a test keeps its output current)."""
