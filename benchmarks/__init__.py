"""seqkernels benchmark harness.

One file per purpose:

- ``cases.py``      what is timed: a case and its fwd / bwd / fwd+bwd runners
- ``harness.py``    timing and peak memory
- ``ceilings.py``   the GEMM and copy ceilings, measured in the run
- ``environment.py``  the environment record (device, versions, commit)
- ``plan.py``       jobs, seqkernels' backends per device, dtypes, the
                    recurrence algorithm of each recurrent provider
- ``targets.py``    target rows (``Pairing``) and what each target id means
- ``compiled.py``   the torch.compile providers' compile policy
- ``check.py``      a loose correctness check of every provider before timing
- ``lstm.py``       LSTM providers, configurations, FLOP and byte counts, and
                    target rows L1..L6
- ``gru_rnn.py``    GRU and RNN providers and configurations, target row L7
- ``flashrnn_anchor.py``  FlashRNN's fused CUDA LSTM as a provider (target row F1)
- ``exchange/``     a CUDA micro-benchmark of the state exchange between the
                    blocks of a persistent recurrence (``exchange/run.sh``)
- ``attention.py``  attention providers (SDPA, probabilities, multi-head,
                    additive), configurations, work counts, target rows A1..A4
- ``kernels.py``    the kernel families by name
- ``report.py``     the tidy CSV, the markdown target table, plots from the CSV
- ``run.py``        the main job: ``python benchmarks/run.py --help``
- ``suite.py``, ``test_bench_lstm.py``, ``test_bench_attention.py``  small
                    pytest-benchmark suites (``pytest benchmarks --benchmark-only``)
"""
