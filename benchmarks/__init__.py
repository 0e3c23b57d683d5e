"""seqkernels benchmark harness.

One file per purpose:

- ``harness.py``  timing, peak memory, the GEMM and copy ceilings, the
                  environment record, and the fwd / bwd / fwd+bwd runners
- ``check.py``    a loose correctness check of every provider before timing
- ``lstm.py``     LSTM providers, configurations, FLOP and byte counts, and
                  the target rows of shared/design/TARGETS.md
- ``attention.py``  attention providers (SDPA, probabilities, multi-head,
                  additive), configurations, work counts, target rows A1..A4
- ``report.py``   the tidy CSV, the markdown target table, plots from the CSV
- ``run.py``      the main job: ``python benchmarks/run.py --help``
- ``test_bench_lstm.py``, ``test_bench_attention.py``  small
                  pytest-benchmark suites (``pytest benchmarks --benchmark-only``)
"""
