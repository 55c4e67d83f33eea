"""Benchmarks of the solver: published VRPTW instances and home-care days.

- :mod:`benchmarks.solomon`: Solomon-format instances, gap to best-known.
- :mod:`benchmarks.homecare`: seeded home-care days at three sizes.
- :mod:`benchmarks.checker`: the independent feasibility checker both use.
- :mod:`benchmarks.compare`: PyVRP and VROOM on the same instances.
- :mod:`benchmarks.plot`: figures of the results.

Each benchmark is a command (``python -m benchmarks.solomon --help``) that
writes JSON; none of them runs inside the unit tests.
"""
