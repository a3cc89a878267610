"""The demos that ``make demo`` (``thrifty demo``) runs: one ``<core>_demo.py`` per core.

Each module has ``run(out_dir, *, quick, progress)``, which returns the numbers as a dict
and saves a plot, and ``format_report(result)``, which prints them as a table; each also
runs as a script (``python examples/steps_demo.py --quick``).
"""
