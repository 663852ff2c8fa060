// parallel.cpp: fork-safe regions, kept exceptions and the sleeping barrier (see parallel.h).
#include "parallel.h"

#include <chrono>
#include <climits>
#include <condition_variable>
#include <thread>

#include <pthread.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace imdbfast {
namespace cpu {

// ---- fork ---------------------------------------------------------------------------------------

namespace {

// A thread that runs regions for the thread that forked (see run_region). Created on first use
// in a child; never destroyed (in a grandchild its thread is gone, so the object is abandoned).
struct Helper {
    std::mutex mutex;
    std::condition_variable cv;
    const std::function<void()>* job = nullptr;
    bool done = false;
    std::exception_ptr error;

    Helper() {
        std::thread([this] {
            std::unique_lock<std::mutex> lock(mutex);
            for (;;) {
                cv.wait(lock, [&] { return job != nullptr && !done; });
                try {
                    (*job)();
                } catch (...) {
                    error = std::current_exception();
                }
                done = true;
                cv.notify_all();
            }
        }).detach();
    }

    void run(const std::function<void()>& f) {
        std::unique_lock<std::mutex> lock(mutex);
        error = nullptr;
        done = false;
        job = &f;
        cv.notify_all();
        cv.wait(lock, [&] { return done; });
        job = nullptr;
        if (error) std::rethrow_exception(error);
    }
};

// Only g_fork_thread uses the helper, so none of this needs a lock.
std::atomic<bool> g_forked{false};
pthread_t g_fork_thread;     // the thread that called fork, in the child
Helper* g_helper = nullptr;  // for g_fork_thread, in this process

void on_fork_child() {
    // Only plain stores here: the child has one thread, and the parent's helper is gone.
    g_fork_thread = pthread_self();
    g_helper = nullptr;
    g_forked.store(true);
}

const bool g_registered = [] {
    pthread_atfork(nullptr, nullptr, on_fork_child);
    return true;
}();

Helper& helper() {
    if (!g_helper) g_helper = new Helper();
    return *g_helper;
}

}  // namespace

bool forked_child() { return g_forked.load(); }

void run_region(int nt, const std::function<void()>& region) {
    (void)g_registered;
    if (nt > 1 && g_forked.load(std::memory_order_relaxed) &&
        pthread_equal(pthread_self(), g_fork_thread))
        helper().run(region);
    else
        region();
}

void RegionErrors::keep(std::exception_ptr e, int64_t phase) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (phase < first_phase_.load(std::memory_order_relaxed)) {
        first_ = e;
        first_phase_.store(phase, std::memory_order_release);
    }
}

// ---- the barrier --------------------------------------------------------------------------------

namespace {

// Spin for about this long before sleeping: longer than a training step's usual imbalance
// between threads (tens of microseconds at batch 512), far shorter than a scheduler slice.
constexpr int64_t kSpinNs = 50000;

inline int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

inline void sleep_while(std::atomic<uint32_t>& word, uint32_t value) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr,
            nullptr, 0);
#else
    (void)value;
    std::this_thread::yield();
#endif
}

inline void wake_all(std::atomic<uint32_t>& word) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
            nullptr, 0);
#else
    (void)word;
#endif
}

}  // namespace

int64_t Barrier::wait() {
    if (n_ <= 1) return 0;
    const uint32_t gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {  // the last to arrive
        arrived_.store(0, std::memory_order_relaxed);
        generation_.store(gen + 1, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(generation_);
        return 0;
    }
    const int64_t t0 = now_ns();
    for (int i = 1;; ++i) {
        if (generation_.load(std::memory_order_acquire) != gen) return now_ns() - t0;
        cpu_relax();
        if (i % 64 == 0 && now_ns() - t0 > kSpinNs) break;
    }
    // Announce the sleep before the last check: the releaser either sees a sleeper and wakes
    // it, or this check sees the new generation (both sides seq_cst).
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (generation_.load(std::memory_order_seq_cst) == gen) sleep_while(generation_, gen);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return now_ns() - t0;
}

}  // namespace cpu
}  // namespace imdbfast
