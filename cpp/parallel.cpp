// parallel.cpp: fork-safe regions, kept exceptions and the sleeping barrier (see parallel.h).
#include "parallel.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#ifdef IMDBFAST_HAVE_OPENMP
#include <omp.h>
#endif

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace imdbfast {
namespace cpu {

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

namespace {
std::atomic<bool> g_fake_busy{false};
std::atomic<int64_t> g_fake_preemptions{0};
}  // namespace

int64_t thread_preemptions() {
    if (g_fake_busy.load(std::memory_order_relaxed)) return g_fake_preemptions++;
#if defined(__linux__) && defined(RUSAGE_THREAD)
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) return static_cast<int64_t>(ru.ru_nivcsw);
#endif
    return 0;
}

// ---- how many threads ---------------------------------------------------------------------------

namespace {

std::atomic<int> g_default_threads{0};
std::atomic<bool> g_split_all_work{false};

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    if (f) ss << f.rdbuf();
    return ss.str();
}

// ceil(quota / period) from a cgroup v2 cpu.max ("max 100000" or "150000 100000"), or v1's two
// files; 0 when unlimited or unreadable.
int quota_cpus(const std::string& quota, const std::string& period) {
    long long q = 0, p = 0;
    if (quota.empty() || quota.compare(0, 3, "max") == 0) return 0;
    try {
        q = std::stoll(quota);
        p = std::stoll(period);
    } catch (...) {
        return 0;
    }
    if (q <= 0 || p <= 0) return 0;
    return static_cast<int>(std::min<long long>((q + p - 1) / p, 1 << 20));
}

int limit_at(const std::string& dir, bool v2) {
    if (v2) {
        std::istringstream f(read_file(dir + "/cpu.max"));
        std::string q, p;
        f >> q >> p;
        return quota_cpus(q, p);
    }
    return quota_cpus(read_file(dir + "/cpu.cfs_quota_us"), read_file(dir + "/cpu.cfs_period_us"));
}

}  // namespace

int cgroup_cpu_limit(const std::string& proc_self_cgroup, const std::string& root) {
    int best = 0;
    auto take = [&](int n) {
        if (n > 0 && (best == 0 || n < best)) best = n;
    };
    std::istringstream lines(proc_self_cgroup);
    std::string line;
    while (std::getline(lines, line)) {
        // "hierarchy-id:controllers:path"; v2 is "0::path"
        const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        const std::string controllers = line.substr(a + 1, b - a - 1);
        std::string path = line.substr(b + 1);
        const bool v2 = controllers.empty();
        std::string mount;
        if (v2) {
            mount = root;
        } else {
            std::istringstream c(controllers);
            std::string name;
            bool cpu = false;
            while (std::getline(c, name, ',')) cpu |= name == "cpu";
            if (!cpu) continue;
            mount = root + "/" + controllers;
        }
        // The process's cgroup and each one above it (a limit anywhere up the tree applies);
        // in a container whose cgroup is its root the path is "/" and this reads the mount.
        while (!path.empty() && path.back() == '/') path.pop_back();
        for (;;) {
            take(limit_at(mount + path, v2));
            if (path.empty()) break;
            path.resize(path.rfind('/'));
        }
    }
    return best;
}

int available_cpus() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
    static const int quota = cgroup_cpu_limit(read_file("/proc/self/cgroup"), "/sys/fs/cgroup");
    if (quota > 0) n = std::min(n, quota);
#endif
    return std::max(1, n);
}

#ifdef IMDBFAST_HAVE_OPENMP
// Whether OMP_NUM_THREADS was set when this library loaded, which is when libgomp read it
// (it is loaded first). A program that sets it later (dask.distributed's LocalCluster does, in
// its own process, for the workers it spawns) changes neither libgomp's count nor ours.
static const bool g_omp_env_at_load = std::getenv("OMP_NUM_THREADS") != nullptr;
#endif

void set_default_threads(int n) { g_default_threads.store(n > 0 ? n : 0); }

int default_threads() {
    const int n = g_default_threads.load();
    if (n > 0) return n;
#ifdef IMDBFAST_HAVE_OPENMP
    // OMP_NUM_THREADS is the user's choice; otherwise the CPUs this process may really use
    // now (libgomp counts the affinity mask once, at load, and knows no cgroup quota).
    if (g_omp_env_at_load) return omp_get_max_threads();
    return available_cpus();
#else
    return 1;
#endif
}

bool have_openmp() {
#ifdef IMDBFAST_HAVE_OPENMP
    return true;
#else
    return false;
#endif
}

int resolve_threads(int requested) {
#ifdef IMDBFAST_HAVE_OPENMP
    return std::max(1, requested > 0 ? requested : default_threads());
#else
    (void)requested;
    return 1;
#endif
}

bool set_split_all_work(bool on) { return g_split_all_work.exchange(on); }

// ---- threads the system lets start ----------------------------------------------------------
// libgomp ends the process ("Thread creation failed") when pthread_create fails, e.g. under a
// tight RLIMIT_NPROC or an address-space limit too small for its workers' stacks. So before a
// thread first asks for a team bigger than any it had, imdbfast starts the workers itself, with
// libgomp's stack size, and keeps them alive together: if the system refuses, the team shrinks
// to what it allowed (results do not depend on the thread count) and a notice says so, once.
// Checked just before the region: a limit that another thread of the process exhausts in
// between can still fail libgomp.

namespace {

std::mutex g_notice_mutex;
std::function<void(const std::string&)> g_notice;  // set by the bindings
std::atomic<bool> g_noticed_threads{false};
thread_local int t_team_started = 1;  // the biggest team this thread's regions have had

// OMP_STACKSIZE (else GOMP_STACKSIZE) as libgomp reads it: a number, then B, K, M or G
// (K when none); 0 for none or an invalid value (libgomp then uses the default too).
size_t omp_stack_size() {
    for (const char* name : {"OMP_STACKSIZE", "GOMP_STACKSIZE"}) {
        const char* v = std::getenv(name);
        if (!v || !*v) continue;
        char* end = nullptr;
        const unsigned long long n = std::strtoull(v, &end, 10);
        if (end == v) return 0;
        while (*end == ' ') ++end;
        int shift = 10;
        switch (*end) {
            case 'b': case 'B': shift = 0; ++end; break;
            case 'k': case 'K': shift = 10; ++end; break;
            case 'm': case 'M': shift = 20; ++end; break;
            case 'g': case 'G': shift = 30; ++end; break;
            case '\0': break;
            default: return 0;
        }
        while (*end == ' ') ++end;
        if (*end || n > (SIZE_MAX >> shift)) return 0;
        return static_cast<size_t>(n) << shift;
    }
    return 0;
}

void* wait_at_gate(void* gate) {
    pthread_mutex_lock(static_cast<pthread_mutex_t*>(gate));
    pthread_mutex_unlock(static_cast<pthread_mutex_t*>(gate));
    return nullptr;
}

// The team size, up to n, whose n - 1 workers the system starts now (all alive at once); the
// error of the first refusal in *why.
int startable_team(int n, int* why) {
    static const size_t stack = omp_stack_size();
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return 1;
    if (stack) pthread_attr_setstacksize(&attr, stack);
    std::vector<pthread_t> started;
    try {
        started.reserve(static_cast<size_t>(n - 1));
    } catch (...) {
        pthread_attr_destroy(&attr);
        *why = ENOMEM;
        return 1;
    }
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&gate);  // the workers wait here until all have started
    int rc = 0;
    for (int i = 1; i < n; ++i) {
        pthread_t t;
        if ((rc = pthread_create(&t, &attr, wait_at_gate, &gate)) != 0) break;
        started.push_back(t);
    }
    pthread_mutex_unlock(&gate);
    for (pthread_t t : started) pthread_join(t, nullptr);
    const int k = 1 + static_cast<int>(started.size());
    pthread_attr_destroy(&attr);
    *why = rc;
    return k;
}

int startable(int nt) {
    if (nt <= t_team_started) return nt;
    int why = 0;
    const int k = startable_team(nt, &why);
    if (k >= nt) {
        t_team_started = nt;
        return nt;
    }
    if (!g_noticed_threads.exchange(true)) {
        std::function<void(const std::string&)> notice;
        {
            std::lock_guard<std::mutex> lock(g_notice_mutex);
            notice = g_notice;
        }
        if (notice)
            notice("imdbfast: the system refused to start more threads (" +
                   std::string(std::strerror(why)) + "; a process or memory limit?): running on " +
                   std::to_string(k) + " of the " + std::to_string(nt) +
                   " threads asked for. Results are the same on any thread count; this is said "
                   "once.");
    }
    return k;
}

}  // namespace

void set_notice(std::function<void(const std::string&)> notice) {
    std::lock_guard<std::mutex> lock(g_notice_mutex);
    g_notice = std::move(notice);
}

int threads_for(int requested, int64_t work, int64_t grain) {
    if (g_split_all_work.load(std::memory_order_relaxed))
        return startable(resolve_threads(requested));
    const int64_t useful = std::max<int64_t>(1, work / std::max<int64_t>(1, grain));
    return startable(static_cast<int>(std::min<int64_t>(resolve_threads(requested), useful)));
}

// ---- a busy machine ---------------------------------------------------------------------------

namespace {
constexpr int64_t kSoloFirstNs = 50'000'000, kSoloMaxNs = 1'000'000'000;
std::atomic<int64_t> g_solo_until{0};             // run alone until then (now_ns)
std::atomic<int64_t> g_solo_stretch{kSoloFirstNs};  // the next stretch
}  // namespace

bool contention_says_solo() {
    if (g_split_all_work.load(std::memory_order_relaxed)) return false;  // tests: every thread
    return now_ns() < g_solo_until.load(std::memory_order_relaxed);
}

bool set_fake_busy(bool on) {
    g_solo_until.store(0);
    g_solo_stretch.store(kSoloFirstNs);
    return g_fake_busy.exchange(on);
}

void contention_report(bool contended) {
    if (!contended) {
        g_solo_stretch.store(kSoloFirstNs, std::memory_order_relaxed);
        return;
    }
    const int64_t stretch = g_solo_stretch.load(std::memory_order_relaxed);
    g_solo_until.store(now_ns() + stretch, std::memory_order_relaxed);
    g_solo_stretch.store(std::min(kSoloMaxNs, 2 * stretch), std::memory_order_relaxed);
}

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
    t_team_started = 1;  // the regions' workers did not come along
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
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (phase < failed_.load(std::memory_order_relaxed)) {
            first_ = e;
            failed_.store(phase, std::memory_order_release);
        }
    }
    request_leave(phase);
}

// ---- the barrier --------------------------------------------------------------------------------

namespace {

// Spin for about this long before sleeping: longer than a training step's usual imbalance
// between threads (under 0.15 ms at batch 512), shorter than a scheduler slice. (Waking a
// sleeper costs ~50 us: a 50 us spin made the idle 2-thread fit 10-20 % slower.)
constexpr int64_t kSpinNs = 200000;


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
