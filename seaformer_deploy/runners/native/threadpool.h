// The wheel ships libexecutorch_threadpool.so but not its header; declare the entry points we
// call (a non-virtual member: the link needs only its mangled name).
#pragma once

#include <cstdint>

namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
