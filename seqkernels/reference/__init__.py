"""Pure PyTorch implementations of every seqkernels op.

Each module mirrors an op's forward/backward split exactly, with the
backward written by hand: it is the oracle that the kernels are tested
against, and the ``reference`` backend.
"""
