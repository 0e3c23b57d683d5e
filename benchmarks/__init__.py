"""seqkernels benchmark harness.

One file per purpose:

- ``harness.py``  timing, peak memory, the GEMM and copy ceilings, the
                  environment record, and the fwd / bwd / fwd+bwd runners
- ``check.py``    a loose correctness check of every provider before timing
- ``lstm.py``     LSTM providers, configurations, FLOP and byte counts, and
                  the target rows of shared/design/TARGETS.md
- ``report.py``   the tidy CSV, the markdown target table, plots from the CSV
- ``run.py``      the main job: ``python benchmarks/run.py --help``
- ``test_bench_lstm.py``  a small pytest-benchmark suite
                  (``pytest benchmarks --benchmark-only``)
"""
