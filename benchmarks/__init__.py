"""The benchmark suite behind ``make bench`` (``python -m benchmarks``): measurement only.

Each figure module measures one claim of issue 7 and returns :class:`Figure` records;
``__main__`` runs them, prints the table and writes ``out/bench/results.json``. The
emulator and every measured run live in their own processes (``emulator_proc``,
``worker``), so wall times, CPU times and peak RSS belong to one side only.
"""
