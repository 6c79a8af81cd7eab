// bare-loop MODEL.pte INPUT.bin ITERATIONS CORE
// Prints the mean milliseconds of one execute(), measured with one clock pair around the whole
// loop (no per-iteration bookkeeping), minus the separately timed cost of re-setting the input.
#include <sched.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#include "threadpool.h"

using executorch::extension::module::Module;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  long n = std::atol(argv[3]);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(std::atoi(argv[4]), &set);
  sched_setaffinity(0, sizeof(set), &set);
  executorch::runtime::runtime_init();
  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(1);
  Module module(argv[1]);
  if (module.load_method("forward") != executorch::runtime::Error::Ok) return 3;
  auto info = module.method_meta("forward")->input_tensor_meta(0);
  std::ifstream in(argv[2], std::ios::binary);
  std::vector<char> bytes(std::istreambuf_iterator<char>(in), {});
  std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
  auto tensor = executorch::extension::make_tensor_ptr(sizes, bytes.data(), info->scalar_type());
  std::vector<executorch::runtime::EValue> inputs{executorch::runtime::EValue(tensor)};
  for (int i = 0; i < 20; ++i) {
    (void)module.set_inputs("forward", inputs);
    (void)module.execute("forward");
  }
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    (void)module.set_inputs("forward", inputs);
    (void)module.execute("forward");
  }
  auto t1 = Clock::now();
  for (long i = 0; i < n; ++i) (void)module.set_inputs("forward", inputs);
  auto t2 = Clock::now();
  double total = std::chrono::duration<double, std::milli>(t1 - t0).count();
  double inputs_only = std::chrono::duration<double, std::milli>(t2 - t1).count();
  std::printf("{\"execute_ms\": %.6f, \"set_inputs_ms\": %.6f}\n", (total - inputs_only) / n,
              inputs_only / n);
  return 0;
}
