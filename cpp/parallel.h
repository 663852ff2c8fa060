// parallel.h: how imdbfast runs work on several threads, so that it survives the programs it is
// embedded in (forked workers, busy machines, memory limits). Every OpenMP region of the core
// goes through run_region; the training loop synchronises with Barrier.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>

#ifdef IMDBFAST_HAVE_OPENMP
#include <omp.h>
#endif

namespace imdbfast {
namespace cpu {

// ---- how many threads ----
// requested <= 0 means the default: set_default_threads(n) if set, else OMP_NUM_THREADS if set,
// else available_cpus().
void set_default_threads(int n);
int default_threads();
int resolve_threads(int requested);
// Threads worth using for `work` units when each thread should get at least `grain` of them,
// and that the system lets start now (see parallel.cpp; every region's team comes from here).
int threads_for(int requested, int64_t work, int64_t grain);
// Inside a region: this thread's number and the team's size (OpenMP may give fewer threads
// than asked: OMP_DYNAMIC, OMP_THREAD_LIMIT). 0 and 1 without OpenMP.
inline int thread_num() {
#ifdef IMDBFAST_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
inline int team_size() {
#ifdef IMDBFAST_HAVE_OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
// Where a one-time notice goes (the bindings turn it into a Python RuntimeWarning).
void set_notice(std::function<void(const std::string&)> notice);
// For the tests: with `on`, threads_for ignores the grain, so every call with little work runs
// on all the threads asked for (results must not change). Returns the previous setting.
bool set_split_all_work(bool on);
bool have_openmp();
// The CPUs this process may use now: its affinity mask, capped by a cgroup CPU quota.
int available_cpus();
// The CPU quota (rounded up) of the cgroups listed in `proc_self_cgroup` (the text of
// /proc/self/cgroup, v1 or v2) under the cgroup mount `root`; 0 when there is none.
int cgroup_cpu_limit(const std::string& proc_self_cgroup, const std::string& root);

// Monotonic nanoseconds.
int64_t now_ns();
// Times the calling thread was preempted (involuntary context switches) so far; 0 where the OS
// does not say.
int64_t thread_preemptions();

// ---- a busy machine ----
// Process-wide memory of contention for the training loop: after a call on several threads
// found a partner descheduled (contention_report(true)), calls run on one thread
// (contention_says_solo) for a stretch of time, then one tries again; each contended try doubles
// the stretch (50 ms up to 1 s), a clean one resets it. Results are the same on any thread
// count, so this only moves time.
bool contention_says_solo();
void contention_report(bool contended);
// For the tests: pretend every thread is preempted at every look (so calls on several threads
// shed to one after a step or two); switching it resets the memory above. Returns the previous
// setting.
bool set_fake_busy(bool on);

// The core's switches for tests, handed to the test module imdbfast._testing through _core's
// capsule "_test_hooks" (cpp/bind_testing.cpp): _core itself binds none of them.
struct TestHooks {
    bool (*split_all_work)(bool on);
    bool (*fake_busy)(bool on);
    int (*cgroup_cpu_limit)(const std::string& proc_self_cgroup, const std::string& root);
};
inline const TestHooks* test_hooks() {
    static const TestHooks hooks{set_split_all_work, set_fake_busy, cgroup_cpu_limit};
    return &hooks;
}

// ---- regions ----
// Runs `region`, code that opens one OpenMP parallel region of nt threads, and returns when it
// is done; an exception thrown by region (or kept by a RegionErrors it rethrows) reaches the
// caller. Normally region runs on the calling thread. In a process forked from one that had
// used threads, the thread that forked runs it on a helper thread instead: libgomp's pool of
// workers belongs to the thread that opened the regions and does not survive fork (a region
// opened from that thread waits forever for workers that are gone), while a thread created
// after the fork starts a pool of its own, so a forked child keeps every thread.
void run_region(int nt, const std::function<void()>& region);

// Whether this process is a fork child of one that had loaded imdbfast (diagnostics).
bool forked_child();

// The first exception thrown by the threads of a region, and the one way the threads of a
// phased region leave early together. A worker's body must not let an exception escape the
// region (that would be std::terminate), so it runs under guard() and the caller rethrows after
// the region. A region that synchronises in phases numbers them; any thread may ask to leave
// after the barrier that ends phase k (request_leave), for its own reasons (another thread is
// descheduled; the team is short), and a failure in phase k asks the same. The earliest request
// wins, and after the barrier that ends phase k leaves_after(k) gives every thread the same
// answer, provided no request names a phase a thread may already have passed: a thread in
// phase k asks for k or later. failed_at() tells the caller whether the last phase's work is
// void (a failure in it) or stands.
class RegionErrors {
   public:
    static constexpr int64_t kNone = INT64_MAX;

    template <class F>
    void guard(F&& f, int64_t phase = 0) noexcept {
        try {
            f();
        } catch (...) {
            keep(std::current_exception(), phase);
        }
    }
    void request_leave(int64_t phase) noexcept {
        int64_t cur = leave_.load(std::memory_order_relaxed);
        while (phase < cur &&
               !leave_.compare_exchange_weak(cur, phase, std::memory_order_release)) {
        }
    }
    bool leaves_after(int64_t phase) const {
        return leave_.load(std::memory_order_acquire) <= phase;
    }
    // The phase the region left after (kNone: it ran to the end), and the phase of the first
    // failure (kNone: none).
    int64_t left_after() const { return leave_.load(std::memory_order_acquire); }
    int64_t failed_at() const { return failed_.load(std::memory_order_acquire); }
    void rethrow() {
        if (failed_at() != kNone) std::rethrow_exception(first_);
    }

   private:
    void keep(std::exception_ptr e, int64_t phase) noexcept;
    std::atomic<int64_t> leave_{kNone};
    std::atomic<int64_t> failed_{kNone};
    std::mutex mutex_;
    std::exception_ptr first_;
};

// A reusable barrier for the n threads of one region. A waiter spins briefly (a step's normal
// imbalance), then sleeps in the kernel: on a busy machine a thread whose partner was
// descheduled gives its core away instead of spinning through the partner's time slice (as
// libgomp's barrier does, for up to GOMP_SPINCOUNT iterations). wait() returns the nanoseconds
// the caller waited.
class Barrier {
   public:
    explicit Barrier(int n) : n_(n) {}
    int64_t wait();

   private:
    const int n_;
    alignas(64) std::atomic<int> arrived_{0};
    alignas(64) std::atomic<uint32_t> generation_{0};
    std::atomic<int> sleepers_{0};
};

}  // namespace cpu
}  // namespace imdbfast
