// seaformer-runner: time ExecuTorch programs on one pinned CPU core.
//
// Usage: seaformer-runner PLAN_FILE RESULT_JSON
//        seaformer-runner --version
//
// The plan is a line-based file (written by seaformer_deploy/runners/plan.py):
//   core <n>                      CPU to pin to (-1: do not pin)
//   threads <n>                   XNNPACK / kernel thread-pool size
//   warmup <iterations> <seconds> per model, both minima must be met
//   timed <iterations> <seconds>  per model, both minima must be met
//   rounds <n>                    models are interleaved in this many rounds
//   cooldown <seconds>            pause between model blocks
//   progress <file>               (optional) append "<phase> <model id>" lines as work starts
//   model <id>                    starts a model; then:
//   path <file>                     the .pte
//   input <file>                    raw little-endian tensor, one line per input, in order
//   outputs <dir>                   (optional) where to write the outputs of the last run
//
// All models are loaded and warmed up first, then timed round-robin: in each round every model
// runs a block of iterations, so slow drift (thermal, frequency, other load) hits all alike.
// Every iteration records its wall time and the CPU it finished on. The result is JSON.
// We write this runner ourselves (rather than use ExecuTorch's executor_runner) because the
// measurement protocol -- interleaving, per-iteration CPU, load time, RSS -- is the product.

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#include "threadpool.h"

using executorch::aten::ScalarType;
using executorch::extension::TensorPtr;
using executorch::extension::make_tensor_ptr;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using Clock = std::chrono::steady_clock;

#ifndef SEAFORMER_ET_VERSION
#define SEAFORMER_ET_VERSION "unknown"
#endif

// Timed iterations execute through this one function, never inlined, so that valgrind's
// callgrind counts exactly them (bench --metric instructions: --toggle-collect and --dump-after
// on this name, one dump per iteration); natively it costs one call per iteration.
extern "C" __attribute__((noinline)) bool seaformer_timed_execute(Module* module) {
  return module->execute("forward").ok();
}

namespace {

struct ModelPlan {
  std::string id, path, outputs_dir;
  std::vector<std::string> inputs;
};

struct Plan {
  int core = -1;
  int threads = 1;
  long warmup_iterations = 10;
  double warmup_seconds = 0.5;
  long iterations = 50;
  double min_seconds = 2.0;
  int rounds = 5;
  double cooldown_seconds = 0.0;
  std::string progress;
  std::vector<ModelPlan> models;
};

struct Model {
  ModelPlan plan;
  std::unique_ptr<Module> module;
  std::vector<std::vector<char>> input_data;   // owns the bytes the input tensors point to
  std::vector<TensorPtr> input_tensors;
  std::vector<EValue> input_values;
  double load_ms = 0;
  long rss_after_load_kb = 0;
  long warmup_done = 0;
  double warmup_s = 0;
  std::vector<long long> samples_ns;
  std::vector<int> cpus, rounds;
  double timed_s = 0;
};

// The progress file says which model the runner was in when it died (killed, hung, crashed),
// so the bench can fail that artifact alone and rerun the others. One short line per model per
// round, written outside the timed interval.
std::FILE* progress_file = nullptr;

void mark(const char* phase, const std::string& id) {
  if (progress_file == nullptr) return;
  std::fprintf(progress_file, "%s %s\n", phase, id.c_str());
  std::fflush(progress_file);
}

[[noreturn]] void die(const std::string& message) {
  std::cerr << "seaformer-runner: " << message << std::endl;
  std::exit(2);
}

std::string rest_of(std::istringstream& in) {
  std::string rest;
  std::getline(in, rest);
  size_t start = rest.find_first_not_of(' ');
  return start == std::string::npos ? "" : rest.substr(start);
}

Plan read_plan(const std::string& file) {
  std::ifstream in(file);
  if (!in) die("cannot read plan " + file);
  Plan plan;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    if (!(words >> key) || key[0] == '#') continue;
    if (key == "core") words >> plan.core;
    else if (key == "threads") words >> plan.threads;
    else if (key == "warmup") words >> plan.warmup_iterations >> plan.warmup_seconds;
    else if (key == "timed") words >> plan.iterations >> plan.min_seconds;
    else if (key == "rounds") words >> plan.rounds;
    else if (key == "cooldown") words >> plan.cooldown_seconds;
    else if (key == "progress") plan.progress = rest_of(words);
    else if (key == "model") plan.models.push_back(ModelPlan{rest_of(words), "", "", {}});
    else if (plan.models.empty()) die("'" + key + "' before any 'model' line");
    else if (key == "path") plan.models.back().path = rest_of(words);
    else if (key == "input") plan.models.back().inputs.push_back(rest_of(words));
    else if (key == "outputs") plan.models.back().outputs_dir = rest_of(words);
    else die("unknown plan line: " + line);
  }
  if (plan.models.empty()) die("the plan lists no model");
  if (plan.rounds < 1) plan.rounds = 1;
  return plan;
}

long rss_kb() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "float32";
    case ScalarType::Half: return "float16";
    case ScalarType::Long: return "int64";
    case ScalarType::Int: return "int32";
    case ScalarType::Byte: return "uint8";
    case ScalarType::Bool: return "bool";
    default: return "other";
  }
}

std::vector<char> read_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) die("cannot read input " + file);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void load(Model& m) {
  mark("load", m.plan.id);
  auto start = Clock::now();
  m.module = std::make_unique<Module>(m.plan.path, Module::LoadMode::File);
  if (m.module->load_method("forward") != Error::Ok) die("cannot load " + m.plan.path);
  auto meta = m.module->method_meta("forward");
  if (!meta.ok()) die("no method meta in " + m.plan.path);
  if (meta->num_inputs() != m.plan.inputs.size())
    die(m.plan.id + ": the program takes " + std::to_string(meta->num_inputs()) +
        " inputs, the plan gives " + std::to_string(m.plan.inputs.size()));
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) die(m.plan.id + ": input " + std::to_string(i) + " is not a tensor");
    m.input_data.push_back(read_bytes(m.plan.inputs[i]));
    auto& bytes = m.input_data.back();
    if (bytes.size() != info->nbytes())
      die(m.plan.id + ": input " + m.plan.inputs[i] + " has " + std::to_string(bytes.size()) +
          " bytes, the program expects " + std::to_string(info->nbytes()));
    std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
    // The program fixes each input's memory order (e.g. channels-last); the file holds the
    // bytes in that order.
    std::vector<executorch::aten::DimOrderType> order(info->dim_order().begin(),
                                                      info->dim_order().end());
    m.input_tensors.push_back(make_tensor_ptr(sizes, bytes.data(), order, {},
                                              info->scalar_type()));
    m.input_values.emplace_back(m.input_tensors.back());
  }
  m.load_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  m.rss_after_load_kb = rss_kb();
}

// Inputs are set before every run, outside the timed interval: memory planning may reuse an
// input's buffer for intermediates once the input is consumed, so a second run on the same
// buffer would compute on garbage (we measured exactly that).
long long run_once(Model& m) {
  if (m.module->set_inputs("forward", m.input_values) != Error::Ok)
    die(m.plan.id + ": set_inputs failed");
  auto start = Clock::now();
  bool ok = seaformer_timed_execute(m.module.get());
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
  if (!ok) die(m.plan.id + ": execute failed");
  return ns;
}

void warm_up(Model& m, const Plan& plan) {
  mark("warmup", m.plan.id);
  auto start = Clock::now();
  double elapsed = 0;
  while (m.warmup_done < plan.warmup_iterations || elapsed < plan.warmup_seconds) {
    run_once(m);
    ++m.warmup_done;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  m.warmup_s = elapsed;
}

void timed_block(Model& m, long iterations, int round) {
  mark("timing", m.plan.id);
  for (long i = 0; i < iterations; ++i) {
    long long ns = run_once(m);
    m.samples_ns.push_back(ns);
    m.cpus.push_back(sched_getcpu());
    m.rounds.push_back(round);
    m.timed_s += ns * 1e-9;
  }
}

bool done(const Model& m, const Plan& plan) {
  return static_cast<long>(m.samples_ns.size()) >= plan.iterations && m.timed_s >= plan.min_seconds;
}

// Keep going round-robin until every model has both its iterations and its seconds. Later rounds
// size each model's block from its measured speed, so all models keep finishing together.
void measure(std::vector<Model>& models, const Plan& plan) {
  long block = std::max<long>(1, (plan.iterations + plan.rounds - 1) / plan.rounds);
  for (int round = 0;; ++round) {
    bool all_done = true;
    for (auto& m : models) {
      if (round >= plan.rounds && done(m, plan)) continue;
      long n = block;
      if (round >= plan.rounds && !m.samples_ns.empty()) {
        double per = m.timed_s / m.samples_ns.size();
        double need = (plan.min_seconds - m.timed_s) / per;
        n = std::max<long>(1, std::min<long>(block, static_cast<long>(std::ceil(need))));
      }
      timed_block(m, n, round);
      if (plan.cooldown_seconds > 0)
        std::this_thread::sleep_for(std::chrono::duration<double>(plan.cooldown_seconds));
      all_done = all_done && done(m, plan);
    }
    if (round + 1 >= plan.rounds && all_done) break;
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

template <typename T>
std::string json_list(const std::vector<T>& values) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  out << ']';
  return out.str();
}

std::string write_outputs(Model& m) {
  if (m.plan.outputs_dir.empty()) return "[]";
  mark("outputs", m.plan.id);
  if (m.module->set_inputs("forward", m.input_values) != Error::Ok)
    die(m.plan.id + ": set_inputs failed");
  auto outputs = m.module->execute("forward");
  if (!outputs.ok()) die(m.plan.id + ": execute failed while saving outputs");
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < outputs->size(); ++i) {
    const auto& tensor = (*outputs)[i].toTensor();
    std::string file = m.plan.outputs_dir + "/output" + std::to_string(i) + ".bin";
    std::ofstream f(file, std::ios::binary);
    if (!f) die("cannot write " + file);
    f.write(static_cast<const char*>(tensor.const_data_ptr()), tensor.nbytes());
    // Bytes are written in the tensor's memory order (dim_order), e.g. NHWC for channels-last.
    std::vector<long> shape(tensor.sizes().begin(), tensor.sizes().end());
    std::vector<int> order(tensor.dim_order().begin(), tensor.dim_order().end());
    out << (i ? "," : "") << "{\"path\":" << json_string(file) << ",\"dtype\":\""
        << dtype_name(tensor.scalar_type()) << "\",\"shape\":" << json_list(shape)
        << ",\"dim_order\":" << json_list(order) << '}';
  }
  out << ']';
  return out.str();
}

void write_result(const std::string& file, const Plan& plan, std::vector<Model>& models,
                  bool pinned, const std::string& pin_error, double wall_s) {
  std::ostringstream out;
  out << "{\"runner\":\"seaformer-native-runner\",\"runtime\":\"executorch\","
      << "\"runtime_version\":\"" << SEAFORMER_ET_VERSION << "\",\"pid\":" << getpid()
      << ",\"requested_core\":" << plan.core << ",\"pinned\":" << (pinned ? "true" : "false")
      << ",\"pin_error\":" << (pin_error.empty() ? "null" : json_string(pin_error))
      << ",\"threads\":" << plan.threads << ",\"rounds\":" << plan.rounds << ",\"models\":[";
  for (size_t k = 0; k < models.size(); ++k) {
    auto& m = models[k];
    out << (k ? "," : "") << "{\"id\":" << json_string(m.plan.id)
        << ",\"path\":" << json_string(m.plan.path) << ",\"load_ms\":" << m.load_ms
        << ",\"rss_after_load_kb\":" << m.rss_after_load_kb
        << ",\"warmup_iterations\":" << m.warmup_done << ",\"warmup_seconds\":" << m.warmup_s
        << ",\"samples_ns\":" << json_list(m.samples_ns) << ",\"cpus\":" << json_list(m.cpus)
        << ",\"rounds\":" << json_list(m.rounds) << ",\"outputs\":" << write_outputs(m) << '}';
  }
  out << "],\"peak_rss_kb\":" << rss_kb() << ",\"wall_seconds\":" << wall_s << "}\n";
  std::string tmp = file + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) die("cannot write " + tmp);
    f << out.str();
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) die("cannot rename " + tmp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::cout << "{\"runner\":\"seaformer-native-runner\",\"runtime\":\"executorch\","
              << "\"runtime_version\":\"" << SEAFORMER_ET_VERSION << "\"}" << std::endl;
    return 0;
  }
  if (argc != 3) die("usage: seaformer-runner PLAN_FILE RESULT_JSON | --version");
  auto wall_start = Clock::now();
  Plan plan = read_plan(argv[1]);
  if (!plan.progress.empty() && !(progress_file = std::fopen(plan.progress.c_str(), "a")))
    die("cannot write " + plan.progress);

  // Pin before the thread pool exists, so any worker it creates inherits the affinity.
  bool pinned = false;
  std::string pin_error;
  if (plan.core >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(plan.core, &set);
    pinned = sched_setaffinity(0, sizeof(set), &set) == 0;
    if (!pinned) pin_error = std::strerror(errno);
  }
  executorch::runtime::runtime_init();
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool != nullptr) pool->_unsafe_reset_threadpool(std::max(1, plan.threads));

  std::vector<Model> models;
  for (auto& p : plan.models) {
    models.emplace_back();
    models.back().plan = p;
  }
  for (auto& m : models) load(m);
  for (auto& m : models) warm_up(m, plan);
  measure(models, plan);
  double wall = std::chrono::duration<double>(Clock::now() - wall_start).count();
  write_result(argv[2], plan, models, pinned, pin_error, wall);
  return 0;
}
