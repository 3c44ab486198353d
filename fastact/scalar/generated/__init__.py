"""Generated coefficients (do not edit): ``python -m fastact.devtools.gen_vmath``,
``gen_vmath32`` and ``gen_rootpolys`` write them; tests check they are current."""
