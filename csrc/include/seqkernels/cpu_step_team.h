// The threads of the CPU's persistent recurrence: one parallel region for
// a whole sequence, the steps separated by a light barrier on one atomic
// counter, instead of waking the thread pool once per step (which costs
// more than a step of a small layer).
//
// run_steps(steps, tasks, threads, fn) calls fn(task, step) for every task
// of every step, the steps in order: each call of step i happens after
// every call of step i - 1 has returned, and its writes are visible to the
// calls of later steps. Tasks have a static owner (a contiguous range per
// thread, so that a thread keeps its weights in its caches from step to
// step), and a thread that waits for the others runs their unclaimed tasks
// of the step it waits for. So the protocol needs no thread to start at
// any particular time: a team that at::parallel_for starts with fewer
// threads than asked, late or not at all (nested in another parallel
// region, it runs inline on one) still finishes, only slower.
//
// Memory orders: a task is claimed by a compare-exchange of its flag from
// step i - 1 to i (each task runs once per step); after it returns, the
// thread adds 1 to `done` with release; a thread starts step i once an
// acquire load of `done` reads i * tasks. The read-modify-writes on `done`
// form one release sequence, so that load synchronizes with every task of
// the steps before.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

namespace seqkernels {

inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

template <typename F>
void run_steps(int64_t steps, int64_t tasks, int threads, const F& fn) {
  if (threads <= 1 || tasks <= 1 || at::in_parallel_region()) {
    for (int64_t i = 0; i < steps; ++i) {
      for (int64_t t = 0; t < tasks; ++t) fn(t, i);
    }
    return;
  }
  struct alignas(64) Flag {
    std::atomic<int64_t> step{-1};  // the last step that claimed the task
  };
  const std::unique_ptr<Flag[]> claimed(new Flag[tasks]);
  alignas(64) std::atomic<int64_t> done{0};
  const auto run_if_unclaimed = [&](int64_t t, int64_t i) {
    int64_t last = i - 1;
    if (claimed[t].step.load(std::memory_order_relaxed) != last ||
        !claimed[t].step.compare_exchange_strong(last, i,
                                                 std::memory_order_acq_rel)) {
      return;
    }
    fn(t, i);
    done.fetch_add(1, std::memory_order_release);
  };
  // Waits until `done` reaches target, the end of step i; after a short
  // spin it runs the tasks of step i nobody has claimed, and then yields
  // (a machine running more threads than cores deschedules the owner).
  const auto wait_for_step = [&](int64_t i) {
    const int64_t target = (i + 1) * tasks;
    for (int spins = 0; done.load(std::memory_order_acquire) < target;
         ++spins) {
      if (spins < 4096) {
        spin_pause();
      } else if (spins == 4096) {
        for (int64_t t = 0; t < tasks; ++t) run_if_unclaimed(t, i);
      } else {
        std::this_thread::yield();
      }
    }
  };
  at::parallel_for(0, threads, 1, [&](int64_t w0, int64_t w1) {
    const int64_t t0 = w0 * tasks / threads, t1 = w1 * tasks / threads;
    for (int64_t i = 0; i < steps; ++i) {
      if (i > 0) wait_for_step(i - 1);
      for (int64_t t = t0; t < t1; ++t) run_if_unclaimed(t, i);
    }
    wait_for_step(steps - 1);
  });
}

}  // namespace seqkernels
