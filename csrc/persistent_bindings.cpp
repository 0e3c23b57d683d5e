// The _C functions of the persistent recurrence: the plans of the GPU's and
// the CPU's kernels (for seqkernels.explain and the tests), the CUDA
// device's limits, the recurrence algorithm asked for, and for the tests
// the CPU kernel's run count, a trace of its thread protocol and
// _C.emulated, the sequence ops on the CPU with the persistent GPU kernels
// in the host emulation.
#include <torch/python.h>

#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "seqkernels/cpu_persistent.h"
#include "seqkernels/cpu_step_team.h"
#include "seqkernels/emulation.h"

namespace seqkernels {
namespace {

namespace py = pybind11;
using at::Tensor;

CellDesc parse_cell(const std::string& kind,
                    const std::string& nonlinearity) {
  for (CellKind k : {CellKind::kLstm, CellKind::kGru, CellKind::kRnn}) {
    if (kind == kind_name(k)) {
      return cell_desc(k, k == CellKind::kRnn
                              ? parse_activation(nonlinearity)
                              : Activation::kTanh);
    }
  }
  TORCH_CHECK(false, "seqkernels: kind must be 'lstm', 'gru' or 'rnn', got '",
              kind, "'");
}

py::dict plan_dict(const PersistentPlan& plan) {
  const persistent::Layout& L = plan.layout;
  return py::dict(py::arg("serves") = plan.serves,
                  py::arg("reason") = plan.reason,
                  py::arg("blocks") = plan.serves ? L.blocks : 0,
                  py::arg("units") = plan.serves ? L.units : 0,
                  py::arg("forward_smem") = plan.serves ? L.f_bytes : 0,
                  py::arg("backward_smem") = plan.serves ? L.b_bytes : 0,
                  py::arg("forward_w_registers") =
                      plan.serves && L.w_regs_forward,
                  py::arg("backward_w_registers") =
                      plan.serves && L.w_regs_backward);
}

py::dict limits_dict(const DeviceLimits& d) {
  return py::dict(py::arg("sm_count") = d.sm_count,
                  py::arg("max_smem") = d.max_smem,
                  py::arg("cooperative") = d.cooperative,
                  py::arg("w_registers") = d.w_registers);
}

}  // namespace

void bind_persistent(py::module_& m) {
  m.def(
      "recurrence_algorithm",
      [] { return recurrence_name(recurrence_algorithm()); },
      "The recurrence algorithm SEQKERNELS_RECURRENCE asks for, as the C++ "
      "driver reads it: 'default' (unset), 'per_step' or 'persistent'.");
  m.def(
      "cpu_persistent_plan",
      [](const std::string& kind, int64_t B, int64_t H, at::ScalarType dtype,
         const std::string& recurrence) {
        const CpuPersistentPlan plan = cpu_persistent_plan(
            parse_cell(kind, "tanh").kind, B, H, dtype,
            parse_recurrence(recurrence.c_str()));
        return py::dict(py::arg("serves") = plan.serves,
                        py::arg("threads") = plan.threads,
                        py::arg("reason") = plan.reason);
      },
      py::arg("kind"), py::arg("B"), py::arg("H"), py::arg("dtype"),
      py::arg("recurrence"),
      "dict(serves, threads, reason): whether the CPU's persistent "
      "recurrence runs a layer (cell kind, batch B, hidden size H, storage "
      "dtype) for the recurrence algorithm asked for; the rule of "
      "cpu_persistent_plan in csrc/include/seqkernels/cpu_persistent.h.");
  m.def(
      "cpu_step_team_trace",
      [](int64_t steps, int64_t tasks, int threads, int64_t slow_task,
         int64_t sleep_us) {
        // Each call's (task, step, start, end, thread): start and end from
        // one counter, so that the order of calls can be checked.
        std::mutex lock;
        std::atomic<int64_t> clock{0};
        std::vector<std::array<int64_t, 5>> calls;
        run_steps(steps, tasks, threads, [&](int64_t t, int64_t i) {
          const int64_t start = clock++;
          if (t == slow_task) {
            std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
          }
          const int64_t end = clock++;
          const std::lock_guard<std::mutex> guard(lock);
          calls.push_back({t, i, start, end,
                           static_cast<int64_t>(at::get_thread_num())});
        });
        return calls;
      },
      py::arg("steps"), py::arg("tasks"), py::arg("threads"),
      py::arg("slow_task"), py::arg("sleep_us"),
      "Runs cpu_step_team.h's run_steps with a function that records each "
      "call as (task, step, start, end, thread) and sleeps sleep_us in task "
      "slow_task (whose owner's other tasks the waiting threads then take "
      "over): test infrastructure.");
  m.def("set_cpu_unit_width", &set_cpu_unit_width, py::arg("units"),
        "The units per block of the CPU's persistent kernel: 8 (an AVX2 "
        "CPU's), 16 (AVX-512's) or 0, the CPU's own: test infrastructure.");
  m.def("cpu_persistent_runs", &cpu_persistent_runs,
        "How many forward and backward recurrences the CPU's persistent "
        "kernel has run in this process (tests count them).");
  m.def(
      "persistent_plan",
      [](const std::string& kind, const std::string& nonlinearity, int64_t T,
         int64_t B, int64_t H, at::ScalarType dtype, int sm_count,
         int64_t max_smem, bool cooperative, bool w_registers) {
        return plan_dict(plan_persistent(
            parse_cell(kind, nonlinearity), T, B, H, dtype,
            {sm_count, max_smem, cooperative, w_registers}));
      },
      py::arg("kind"), py::arg("nonlinearity"), py::arg("T"), py::arg("B"),
      py::arg("H"), py::arg("dtype"), py::arg("sm_count"), py::arg("max_smem"),
      py::arg("cooperative") = true, py::arg("w_registers") = true,
      "dict(serves, reason, blocks, units, forward_smem, backward_smem, "
      "forward_w_registers, backward_w_registers): whether the persistent "
      "kernels serve a layer (cell kind, T steps, batch B, hidden size H, "
      "storage dtype) on a device with sm_count SMs and max_smem bytes of "
      "shared memory per block, and whether each of its products keeps "
      "W_hh in registers (w_registers=False: in shared memory everywhere, "
      "the test hook of DeviceLimits); the rule of plan_persistent in "
      "csrc/include/seqkernels/persistent_launch.h.");
  m.def(
      "cuda_device_limits",
      [](int device) {
#if defined(SEQKERNELS_WITH_CUDA)
        return limits_dict(cuda_device_limits(device));
#else
        TORCH_CHECK(false, "seqkernels: built without CUDA kernels (device ",
                    device, ")");
        return py::dict();
#endif
      },
      py::arg("device"),
      "dict(sm_count, max_smem, cooperative, w_registers) of a CUDA device, "
      "as the persistent kernels' plan sees it.");
  m.def(
      "set_cuda_w_registers",
      [](bool allow) {
#if defined(SEQKERNELS_WITH_CUDA)
        set_cuda_w_registers(allow);
#else
        TORCH_CHECK(false, "seqkernels: built without CUDA kernels (",
                    allow, ")");
#endif
      },
      py::arg("allow"),
      "Whether the CUDA backend's persistent kernels may keep W_hh in "
      "registers where it fits (True, the default) or keep it in shared "
      "memory everywhere (False): test infrastructure.");

  py::module_ e = m.def_submodule(
      "emulated",
      "The sequence ops on CPU tensors, with the persistent CUDA kernels run "
      "in the host emulation (csrc/include/seqkernels/host_emulation.h) when "
      "SEQKERNELS_RECURRENCE=persistent: test infrastructure.");
  e.def(
      "set_device",
      [](int sm_count, int64_t max_smem, bool w_registers) {
        set_emulated_device({sm_count, max_smem, true, w_registers});
      },
      py::arg("sm_count"), py::arg("max_smem"), py::arg("w_registers") = true,
      "The emulated device's SMs and shared memory per block, and whether "
      "the plan may keep W_hh in registers (False: shared memory "
      "everywhere).");
  e.def("device", [] { return limits_dict(emulated_device()); },
        "The emulated device's limits.");
  e.def("launches", &emulated_launches,
        "How many persistent kernels the emulation has run in this process.");
  e.def(
      "lstm_seq",
      [](const Tensor& x, const Tensor& h0, const Tensor& c0,
         const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias,
         const OptTensor& w_hr, const OptTensor& lengths) {
        return lstm_seq(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths,
                        /*keep_saved=*/true, emulated_steps());
      },
      "seqkernels::lstm_seq, emulated.");
  e.def(
      "lstm_seq_backward",
      [](const Tensor& grad_y, const Tensor& grad_h_n, const Tensor& grad_c_n,
         const Tensor& x, const Tensor& h0, const Tensor& c0,
         const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr,
         const OptTensor& lengths, const Tensor& y, const Tensor& saved,
         const Tensor& cell_states, const Tensor& cell_outputs,
         bool has_bias) {
        return lstm_seq_backward(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih,
                                 w_hh, w_hr, lengths, y, saved, cell_states,
                                 cell_outputs, has_bias, emulated_steps());
      },
      "seqkernels::lstm_seq_backward, emulated.");
  e.def(
      "gru_seq",
      [](const Tensor& x, const Tensor& h0, const Tensor& w_ih,
         const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
         const OptTensor& lengths) {
        return gru_seq(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                       /*keep_saved=*/true, emulated_steps());
      },
      "seqkernels::gru_seq, emulated.");
  e.def(
      "gru_seq_backward",
      [](const Tensor& grad_y, const Tensor& grad_h_n, const Tensor& x,
         const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
         const OptTensor& lengths, const Tensor& y, const Tensor& saved,
         bool has_bias) {
        return gru_seq_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths,
                                y, saved, has_bias, emulated_steps());
      },
      "seqkernels::gru_seq_backward, emulated.");
  e.def(
      "rnn_seq",
      [](const Tensor& x, const Tensor& h0, const Tensor& w_ih,
         const Tensor& w_hh, const OptTensor& bias, const OptTensor& lengths,
         const std::string& nonlinearity) {
        return rnn_seq(x, h0, w_ih, w_hh, bias, lengths, nonlinearity,
                       /*keep_saved=*/true, emulated_steps());
      },
      "seqkernels::rnn_seq, emulated.");
  e.def(
      "rnn_seq_backward",
      [](const Tensor& grad_y, const Tensor& grad_h_n, const Tensor& x,
         const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
         const OptTensor& lengths, const Tensor& y, const Tensor& saved,
         bool has_bias, const std::string& nonlinearity) {
        return rnn_seq_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths,
                                y, saved, has_bias, nonlinearity,
                                emulated_steps());
      },
      "seqkernels::rnn_seq_backward, emulated.");
}

}  // namespace seqkernels
