// The per-step cost of exchanging the hidden state between the blocks of a
// persistent recurrence kernel, without the recurrence's arithmetic.
//
// Every step, each of `blocks` co-resident blocks (one per SM) reads the
// whole state h [B, H] (bf16), publishes its own slice of the next state
// (H / blocks units of every row) and waits until every block has
// published, as the persistent kernel of issue 12 does. Methods:
//
//   flags         per-producer int flags tagged with the step number: each
//                 block writes its slice to global memory (L2), one thread
//                 stores its flag with st.release.gpu, and thread i of every
//                 block polls producer i's flag with ld.acquire.gpu; the
//                 flags packed side by side
//   flags-padded  the same, each flag on its own 128-byte line
//   grid-sync     the slice written as above, then cooperative groups'
//                 grid.sync() (cooperative launch)
//   cluster       a thread-block cluster (up to 16 blocks, sm_90): each block
//                 keeps h in its shared memory and stores its slice into
//                 every block of the cluster through distributed shared
//                 memory, then cluster.sync(); only the cluster's blocks run
//
// The state is double-buffered by step parity; step s's state holds the
// value (s mod 128) in every element, and every block checks each element
// it reads (the `errors` column counts 32-bit words that were stale or
// wrong; a correct exchange has 0). A wait that spins for more than
// 2^20 polls gives up and is counted in `timeouts`. Times: cudaEvent
// around one launch of `steps` steps, the median (and min, max) over
// `runs` launches after one warm-up launch, divided by `steps`.
//
//   exchange [--blocks 8,16,66,132] [--clusters 8,16] [--batch 16]
//            [--hidden 768] [--steps 20000] [--runs 5] [--threads 256]
//            [--csv FILE]
//
// Prints a markdown table; --csv also writes the rows as CSV.
// Build: benchmarks/exchange/run.sh (nvcc for sm_90a).

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace cg = cooperative_groups;

namespace {

#define CHECK_CUDA(call)                                                    \
  do {                                                                      \
    cudaError_t err_ = (call);                                              \
    if (err_ != cudaSuccess) {                                              \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__,    \
                   #call, cudaGetErrorString(err_));                        \
      std::exit(1);                                                         \
    }                                                                       \
  } while (0)

constexpr int kFlagLine = 32;            // ints per 128-byte line
constexpr long long kSpinLimit = 1 << 20;

struct Params {
  uint16_t* state;    // [2, B, H] bf16 bits (global methods)
  int* flags;         // [blocks * flag_stride]
  int flag_stride;
  int B, H, steps;
  unsigned long long* errors;    // [2]: wrong words, timed-out waits
};

__device__ __forceinline__ void store_release(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(p), "r"(v)
               : "memory");
}

__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p)
               : "memory");
  return v;
}

// The bf16 bits of step s's value, twice in a 32-bit word.
__device__ __forceinline__ uint32_t step_word(int s) {
  const uint32_t bits = __bfloat16_as_ushort(__float2bfloat16(float(s & 127)));
  return bits | (bits << 16);
}

__device__ __forceinline__ int wrong_words(uint4 v, uint32_t want) {
  return (v.x != want) + (v.y != want) + (v.z != want) + (v.w != want);
}

// The units [u0, u1) of H that block `rank` of `n` owns.
__device__ __forceinline__ void slice_of(int rank, int n, int H, int& u0,
                                         int& u1) {
  u0 = rank * H / n;
  u1 = (rank + 1) * H / n;
}

// Global-memory methods: flags (packed or padded) and grid.sync.
template <bool kGridSync>
__global__ void __launch_bounds__(1024, 1) exchange_global(Params p) {
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int rank = blockIdx.x, nblocks = gridDim.x;
  const int BH = p.B * p.H;
  int u0, u1;
  slice_of(rank, nblocks, p.H, u0, u1);
  const int width = u1 - u0;
  long long wrong = 0, timeouts = 0;
  for (int s = 0; s < p.steps; ++s) {
    // Read all of h_s (L2: .cg skips the L1), check it.
    const uint4* cur =
        reinterpret_cast<const uint4*>(p.state + (s & 1) * BH);
    const uint32_t want = step_word(s);
    for (int i = tid; i < BH / 8; i += nthreads)
      wrong += wrong_words(__ldcg(cur + i), want);
    // Publish this block's slice of h_{s+1}.
    uint16_t* next = p.state + ((s + 1) & 1) * BH;
    const uint16_t value = static_cast<uint16_t>(step_word(s + 1));
    for (int e = tid; e < p.B * width; e += nthreads)
      __stcg(next + (e / width) * p.H + u0 + e % width, value);
    if constexpr (kGridSync) {
      cg::this_grid().sync();
    } else {
      __syncthreads();
      if (tid == 0) store_release(p.flags + rank * p.flag_stride, s + 1);
      if (tid < nblocks) {
        const int* flag = p.flags + tid * p.flag_stride;
        long long spins = 0;
        while (load_acquire(flag) < s + 1) {
          if (++spins == kSpinLimit) {
            ++timeouts;
            break;
          }
        }
      }
      __syncthreads();
    }
  }
  if (wrong) atomicAdd(p.errors, static_cast<unsigned long long>(wrong));
  if (timeouts)
    atomicAdd(p.errors + 1, static_cast<unsigned long long>(timeouts));
}

// Cluster method: h lives in each block's shared memory, [2, B, H] bf16.
__global__ void __launch_bounds__(1024, 1) exchange_cluster(Params p) {
  extern __shared__ uint4 smem[];
  cg::cluster_group cluster = cg::this_cluster();
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int rank = static_cast<int>(cluster.block_rank());
  const int nblocks = static_cast<int>(cluster.num_blocks());
  const int BH8 = p.B * p.H / 8;         // uint4 per state
  const int row8 = p.H / 8;
  int u0, u1;
  slice_of(rank, nblocks, p.H, u0, u1);  // multiples of 8 (host checks)
  const int width8 = (u1 - u0) / 8;
  for (int i = tid; i < BH8; i += nthreads) smem[i] = make_uint4(0, 0, 0, 0);
  // Every block must be running before another writes into its memory.
  cluster.sync();
  long long wrong = 0;
  for (int s = 0; s < p.steps; ++s) {
    const uint4* cur = smem + (s & 1) * BH8;
    const uint32_t want = step_word(s);
    for (int i = tid; i < BH8; i += nthreads)
      wrong += wrong_words(cur[i], want);
    const uint32_t w = step_word(s + 1);
    const uint4 value = make_uint4(w, w, w, w);
    uint4* next = smem + ((s + 1) & 1) * BH8;
    const int per_peer = p.B * width8;
    for (int e = tid; e < nblocks * per_peer; e += nthreads) {
      const int peer = e / per_peer, k = e % per_peer;
      uint4* dst = cluster.map_shared_rank(next, peer);
      dst[(k / width8) * row8 + u0 / 8 + k % width8] = value;
    }
    // Release this block's stores, acquire everyone's (and, the last
    // time, keep every block alive until no store into it is pending).
    cluster.sync();
  }
  if (wrong) atomicAdd(p.errors, static_cast<unsigned long long>(wrong));
}

struct Options {
  std::vector<int> blocks{8, 16, 66, 132};
  std::vector<int> clusters{8, 16};
  int B = 16, H = 768, steps = 20000, runs = 5, threads = 256;
  std::string csv;
};

std::vector<int> parse_list(const char* text) {
  std::vector<int> out;
  for (const char* c = text; *c;) {
    char* end;
    const long v = std::strtol(c, &end, 10);
    if (end == c || v <= 0) {
      std::fprintf(stderr, "bad list '%s' (want e.g. 16,66,132)\n", text);
      std::exit(2);
    }
    out.push_back(static_cast<int>(v));
    c = *end == ',' ? end + 1 : end;
  }
  return out;
}

int parse_int(const char* name, const char* text) {
  char* end;
  const long v = std::strtol(text, &end, 10);
  if (*end || v <= 0) {
    std::fprintf(stderr, "%s wants a positive integer, got '%s'\n", name,
                 text);
    std::exit(2);
  }
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value (see the header of exchange.cu)\n",
                   a.c_str());
      std::exit(2);
    }
    const char* v = argv[++i];
    if (a == "--blocks") o.blocks = parse_list(v);
    else if (a == "--clusters") o.clusters = parse_list(v);
    else if (a == "--batch") o.B = parse_int("--batch", v);
    else if (a == "--hidden") o.H = parse_int("--hidden", v);
    else if (a == "--steps") o.steps = parse_int("--steps", v);
    else if (a == "--runs") o.runs = parse_int("--runs", v);
    else if (a == "--threads") o.threads = parse_int("--threads", v);
    else if (a == "--csv") o.csv = v;
    else {
      std::fprintf(stderr, "unknown option %s (see the header of exchange.cu)\n",
                   a.c_str());
      std::exit(2);
    }
  }
  if (o.H % 8 || o.threads % 32 || o.threads > 1024) {
    std::fprintf(stderr, "--hidden must be a multiple of 8, --threads a "
                         "multiple of 32 up to 1024\n");
    std::exit(2);
  }
  return o;
}

struct Row {
  std::string method, note;
  int blocks = 0;
  float median_us = 0, min_us = 0, max_us = 0;
  unsigned long long errors = 0, timeouts = 0;
  bool ran = false;
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {
    CHECK_CUDA(cudaGetDevice(&device_));
    CHECK_CUDA(cudaGetDeviceProperties(&props_, device_));
    const int most = *std::max_element(o.blocks.begin(), o.blocks.end());
    CHECK_CUDA(cudaMalloc(&state_, 2ull * o.B * o.H * sizeof(uint16_t)));
    CHECK_CUDA(cudaMalloc(&flags_, sizeof(int) * most * kFlagLine));
    CHECK_CUDA(cudaMalloc(&errors_, 2 * sizeof(unsigned long long)));
    CHECK_CUDA(cudaEventCreate(&start_));
    CHECK_CUDA(cudaEventCreate(&stop_));
  }
  ~Bench() {
    cudaFree(state_);
    cudaFree(flags_);
    cudaFree(errors_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }

  const cudaDeviceProp& props() const { return props_; }

  Row global(const char* method, int nblocks, int flag_stride,
             bool grid_sync) {
    Row row{method, "", nblocks};
    const void* fn = grid_sync
                         ? reinterpret_cast<const void*>(exchange_global<true>)
                         : reinterpret_cast<const void*>(exchange_global<false>);
    int per_sm = 0;
    CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, fn, o_.threads, 0));
    if (!props_.cooperativeLaunch) {
      row.note = "no cooperative launch on this device";
      return row;
    }
    if (nblocks > per_sm * props_.multiProcessorCount ||
        (!grid_sync && nblocks > o_.threads)) {
      row.note = "blocks cannot all be resident (or exceed --threads)";
      return row;
    }
    Params p{state_, flags_, flag_stride, o_.B, o_.H, o_.steps, errors_};
    void* args[] = {&p};
    time_runs(row, [&] {
      CHECK_CUDA(cudaMemset(flags_, 0, sizeof(int) * nblocks * kFlagLine));
    }, [&] {
      CHECK_CUDA(cudaLaunchCooperativeKernel(fn, dim3(nblocks),
                                             dim3(o_.threads), args, 0, 0));
    });
    return row;
  }

  Row cluster(int nblocks) {
    Row row{"cluster", "", nblocks};
    if (props_.major < 9) {
      row.note = "thread-block clusters need sm_90";
      return row;
    }
    if (nblocks > 16 || o_.H % (8 * nblocks)) {
      row.note = "needs <= 16 blocks and hidden a multiple of 8 * blocks";
      return row;
    }
    const size_t smem = 2ull * o_.B * o_.H * sizeof(uint16_t);
    CHECK_CUDA(cudaFuncSetAttribute(
        exchange_cluster, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(smem)));
    if (nblocks > 8)
      CHECK_CUDA(cudaFuncSetAttribute(
          exchange_cluster, cudaFuncAttributeNonPortableClusterSizeAllowed,
          1));
    cudaLaunchConfig_t config = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = nblocks;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    config.gridDim = dim3(nblocks);
    config.blockDim = dim3(o_.threads);
    config.dynamicSmemBytes = smem;
    config.attrs = attr;
    config.numAttrs = 1;
    int clusters = 0;
    CHECK_CUDA(cudaOccupancyMaxActiveClusters(&clusters, exchange_cluster,
                                              &config));
    if (clusters < 1) {
      row.note = "no cluster of this size fits the device";
      return row;
    }
    Params p{nullptr, nullptr, 0, o_.B, o_.H, o_.steps, errors_};
    time_runs(row, [] {}, [&] {
      CHECK_CUDA(cudaLaunchKernelEx(&config, exchange_cluster, p));
    });
    return row;
  }

 private:
  // One warm-up launch, then o_.runs timed ones; `reset` runs before each,
  // outside the clock.
  template <typename Reset, typename Launch>
  void time_runs(Row& row, Reset reset, Launch launch) {
    std::vector<float> us;
    unsigned long long totals[2] = {0, 0};
    for (int r = 0; r <= o_.runs; ++r) {
      CHECK_CUDA(cudaMemset(state_, 0, 2ull * o_.B * o_.H * sizeof(uint16_t)));
      CHECK_CUDA(cudaMemset(errors_, 0, 2 * sizeof(unsigned long long)));
      reset();
      CHECK_CUDA(cudaEventRecord(start_));
      launch();
      CHECK_CUDA(cudaGetLastError());
      CHECK_CUDA(cudaEventRecord(stop_));
      CHECK_CUDA(cudaEventSynchronize(stop_));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
      unsigned long long counts[2];
      CHECK_CUDA(cudaMemcpy(counts, errors_, sizeof(counts),
                            cudaMemcpyDeviceToHost));
      totals[0] += counts[0];
      totals[1] += counts[1];
      if (r > 0) us.push_back(ms * 1e3f / o_.steps);
    }
    std::sort(us.begin(), us.end());
    row.median_us = us[us.size() / 2];
    row.min_us = us.front();
    row.max_us = us.back();
    row.errors = totals[0];
    row.timeouts = totals[1];
    row.ran = true;
  }

  const Options& o_;
  int device_ = 0;
  cudaDeviceProp props_{};
  uint16_t* state_ = nullptr;
  int* flags_ = nullptr;
  unsigned long long* errors_ = nullptr;
  cudaEvent_t start_{}, stop_{};
};

void print(const Options& o, const cudaDeviceProp& props,
           const std::vector<Row>& rows) {
  std::printf("Exchange of h [B=%d, H=%d] bf16 per step, %s (%d SMs), "
              "%d threads per block, %d steps per launch, median of %d "
              "launches\n\n",
              o.B, o.H, props.name, props.multiProcessorCount, o.threads,
              o.steps, o.runs);
  std::printf("| method | blocks | us/step (median) | min | max | errors | "
              "timeouts |\n| --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Row& r : rows) {
    if (r.ran)
      std::printf("| %s | %d | %.3f | %.3f | %.3f | %llu | %llu |\n",
                  r.method.c_str(), r.blocks, r.median_us, r.min_us, r.max_us,
                  r.errors, r.timeouts);
    else
      std::printf("| %s | %d | skipped: %s | | | | |\n", r.method.c_str(),
                  r.blocks, r.note.c_str());
  }
}

void write_csv(const Options& o, const cudaDeviceProp& props,
               const std::vector<Row>& rows) {
  FILE* f = std::fopen(o.csv.c_str(), "w");
  if (!f) {
    std::perror(o.csv.c_str());
    std::exit(1);
  }
  std::fprintf(f, "method,blocks,batch,hidden,threads,steps,runs,"
                  "us_per_step_median,us_per_step_min,us_per_step_max,"
                  "errors,timeouts,status,device\n");
  for (const Row& r : rows) {
    std::fprintf(f, "%s,%d,%d,%d,%d,%d,%d,", r.method.c_str(), r.blocks, o.B,
                 o.H, o.threads, o.steps, o.runs);
    if (r.ran)
      std::fprintf(f, "%.4f,%.4f,%.4f,%llu,%llu,ok,", r.median_us, r.min_us,
                   r.max_us, r.errors, r.timeouts);
    else
      std::fprintf(f, ",,,,,skipped: %s,", r.note.c_str());
    std::fprintf(f, "%s\n", props.name);
  }
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  Bench bench(o);
  std::vector<Row> rows;
  for (int n : o.blocks) {
    rows.push_back(bench.global("flags", n, 1, false));
    rows.push_back(bench.global("flags-padded", n, kFlagLine, false));
    rows.push_back(bench.global("grid-sync", n, 1, true));
  }
  for (int n : o.clusters) rows.push_back(bench.cluster(n));
  print(o, bench.props(), rows);
  if (!o.csv.empty()) write_csv(o, bench.props(), rows);
  bool bad = false;
  for (const Row& r : rows) bad |= r.ran && (r.errors || r.timeouts);
  if (bad) std::printf("\nEXCHANGE ERRORS: a method read stale state or "
                       "timed out (see the errors/timeouts columns)\n");
  return bad ? 1 : 0;
}
