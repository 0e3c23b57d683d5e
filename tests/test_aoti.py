"""AOTInductor: a converted model with a recurrent encoder and attention
(the lstm_seq, sdpa and gru_cell ops) is exported with dynamic batch and
sequence sizes, compiled and packaged
(``torch._inductor.aoti_compile_and_package``), and the package runs two
sizes in a fresh process that loads only seqkernels' op library, with the
eager model's outputs.

The compiled package calls our ops through torch's proxy executor, which
looks their schemas up in the dispatcher when the package is loaded: a
process that has not loaded the op library (``import seqkernels``, or
``torch.ops.load_library`` on its compiled extension) cannot load the
package. The Python side of seqkernels (fake functions, autograd) is not
needed there.

One model covers both kinds: one C++ compile takes 10-20 s on two cores.
"""

import subprocess
import sys

import pytest
import torch

import seqkernels
from conftest import assert_matches
from distributed_harness import converted_tagger, setup

# Run in a fresh process: try the package before the op library is loaded
# (expected to fail), load the library alone, run the package.
_RUN_PACKAGE = """
import sys, torch
library, package, inputs, outputs = sys.argv[1:]
try:
    torch._inductor.aoti_load_package(package)
    missing = None
except RuntimeError as e:
    missing = str(e)
torch.ops.load_library(library)
run = torch._inductor.aoti_load_package(package)
torch.save((missing, [run(*args) for args in torch.load(inputs)]), outputs)
"""


@pytest.mark.slow
def test_aoti_package_runs_with_only_the_op_library(tmp_path):
    state, batches = setup()
    model = converted_tagger("cpu", state)
    x = batches[0][0]
    # The model reads the last two steps: T >= 2.
    dims = {0: torch.export.Dim("T", min=2), 1: torch.export.Dim("B")}
    package = torch._inductor.aoti_compile_and_package(
        torch.export.export(model, (x,), dynamic_shapes=(dims,)),
        package_path=str(tmp_path / "tagger.pt2"))
    inputs = [(x,), (torch.randn(8, 3, 3, dtype=torch.float64),)]
    torch.save(inputs, tmp_path / "inputs.pt")
    done = subprocess.run(
        [sys.executable, "-c", _RUN_PACKAGE, seqkernels._C.__file__, package,
         str(tmp_path / "inputs.pt"), str(tmp_path / "outputs.pt")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    missing, outs = torch.load(tmp_path / "outputs.pt")
    assert missing is not None and "seqkernels::" in missing, missing
    for args, out in zip(inputs, outs, strict=True):
        eager = model(*args).detach()
        assert_matches(f"AOTI output at {tuple(args[0].shape)}", out, eager,
                       eager, torch.float64)
