/* LD_PRELOAD for device programs on the ADB test device: the phone's CPUs on a smaller host.
 *
 * The device has ADBTD_DEVICE_NCPU CPUs (8 on the phones), the host fewer. Device cpu d runs on
 * host cpu H(d) = ADBTD_HOST_CPUS[d % n] (the host's allowed CPUs, comma-separated, n of them).
 * A program that pins itself (the runner: sched_setaffinity(0, {core}), then sched_getcpu()
 * per iteration) sees the device:
 *   - sched_setaffinity / pthread_setaffinity_np take a device mask and apply its host image;
 *     a mask naming no CPU the device has fails with EINVAL, as the kernel does.
 *   - sched_getaffinity / pthread_getaffinity_np report the device mask last set for the
 *     thread (or inherited: the process's last one, or ADBTD_DEVICE_AFFINITY, which the taskset
 *     shim sets) while the host mask still is its image; otherwise every device cpu whose
 *     host image is allowed.
 *   - sched_getcpu / getcpu report a device cpu of the thread's device mask that maps to the
 *     host cpu it runs on (the pinned core when pinned to one), else any cpu that maps there.
 *   - sysconf(_SC_NPROCESSORS_*) and get_nprocs*() count the device's CPUs (under qemu they
 *     already read the sandbox's /sys; natively they would see the host).
 * Built twice: for aarch64 guests (qemu passes it with -E LD_PRELOAD) and for x86-64 device
 * programs of the emulator profile. Static programs do not load it (documented gap).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define MAX_DEVICE_CPUS 64
typedef uint64_t device_mask;           /* bit d: device cpu d */

static int ndev = 1, nhost = 1;
static int host_cpu[MAX_DEVICE_CPUS];   /* H(d) */
static device_mask process_hint;        /* last mask set in this process (0: none) */
static __thread device_mask thread_hint;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load_layout(void) {
    const char *n = getenv("ADBTD_DEVICE_NCPU"), *hosts = getenv("ADBTD_HOST_CPUS");
    const char *inherited = getenv("ADBTD_DEVICE_AFFINITY");
    int list[CPU_SETSIZE], count = 0;
    for (const char *p = hosts; p && *p && count < CPU_SETSIZE;) {
        char *end;
        long cpu = strtol(p, &end, 10);
        if (end == p || cpu < 0 || cpu >= CPU_SETSIZE) break;
        list[count++] = (int)cpu;
        p = *end == ',' ? end + 1 : end;
    }
    if (count == 0) list[count++] = 0;
    nhost = count;
    ndev = n ? atoi(n) : nhost;
    if (ndev < 1) ndev = 1;
    if (ndev > MAX_DEVICE_CPUS) ndev = MAX_DEVICE_CPUS;
    for (int d = 0; d < ndev; d++) host_cpu[d] = list[d % nhost];
    process_hint = inherited ? (device_mask)strtoull(inherited, NULL, 16) : 0;
}

static void setup(void) { pthread_once(&once, load_layout); }

static device_mask all_device(void) {
    return ndev == 64 ? ~(device_mask)0 : ((device_mask)1 << ndev) - 1;
}

static device_mask device_of(size_t size, const cpu_set_t *set) {
    device_mask m = 0;
    for (int d = 0; d < ndev; d++)
        if (CPU_ISSET_S(d, size, set)) m |= (device_mask)1 << d;
    return m;
}

static void host_image(device_mask m, cpu_set_t *out) {
    CPU_ZERO(out);
    for (int d = 0; d < ndev; d++)
        if (m >> d & 1) CPU_SET(host_cpu[d], out);
}

/* The device cpus a thread allowed on `host` may be on. */
static device_mask preimage(const cpu_set_t *host) {
    device_mask m = 0;
    for (int d = 0; d < ndev; d++)
        if (CPU_ISSET(host_cpu[d], host)) m |= (device_mask)1 << d;
    return m;
}

static int maps_to(device_mask m, const cpu_set_t *host) {
    cpu_set_t image;
    host_image(m, &image);
    return m && CPU_EQUAL(&image, host);
}

/* What the device would report for a thread with host mask `host` (own: the calling one). */
static device_mask device_view(int own, const cpu_set_t *host) {
    device_mask inherited = process_hint & all_device();
    if (own && maps_to(thread_hint, host)) return thread_hint;
    if (own && maps_to(inherited, host)) return inherited;
    return preimage(host);
}

static void remember(device_mask m) {
    thread_hint = m;
    process_hint = m;       /* threads created from now on inherit it, as the kernel does */
}

static void *next(const char *name) { return dlsym(RTLD_NEXT, name); }

/* ---- sched_* ---------------------------------------------------------------------------- */

int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set) {
    static int (*real)(pid_t, size_t, const cpu_set_t *);
    if (!real) real = next("sched_setaffinity");
    setup();
    device_mask m = device_of(size, set);
    if (!m) { errno = EINVAL; return -1; }
    cpu_set_t host;
    host_image(m, &host);
    int rc = real(pid, sizeof host, &host);
    if (rc == 0 && (pid == 0 || pid == gettid())) remember(m);
    return rc;
}

static int report(device_mask m, size_t size, cpu_set_t *set) {
    if (size * 8 < (size_t)ndev) { errno = EINVAL; return EINVAL; }
    memset(set, 0, size);
    for (int d = 0; d < ndev; d++)
        if (m >> d & 1) CPU_SET_S(d, size, set);
    return 0;
}

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set) {
    static int (*real)(pid_t, size_t, cpu_set_t *);
    if (!real) real = next("sched_getaffinity");
    setup();
    cpu_set_t host;
    if (real(pid, sizeof host, &host) != 0) return -1;
    return report(device_view(pid == 0 || pid == gettid(), &host), size, set) ? -1 : 0;
}

static int device_cpu(int host) {
    cpu_set_t allowed;
    static int (*real_get)(pid_t, size_t, cpu_set_t *);
    if (!real_get) real_get = next("sched_getaffinity");
    device_mask view = real_get(0, sizeof allowed, &allowed) == 0
        ? device_view(1, &allowed) : all_device();
    for (int d = 0; d < ndev; d++)
        if (view >> d & 1 && host_cpu[d] == host) return d;
    for (int d = 0; d < ndev; d++)
        if (host_cpu[d] == host) return d;
    return host;
}

int sched_getcpu(void) {
    static int (*real)(void);
    if (!real) real = next("sched_getcpu");
    setup();
    int host = real();
    return host < 0 ? host : device_cpu(host);
}

int getcpu(unsigned int *cpu, unsigned int *node) {
    static int (*real)(unsigned int *, unsigned int *);
    if (!real) real = next("getcpu");
    setup();
    unsigned int host;
    if (!real || real(&host, node) != 0) return -1;
    if (cpu) *cpu = (unsigned int)device_cpu((int)host);
    return 0;
}

/* ---- pthread_*affinity_np (return an error number, do not set errno) ------------------------ */

int pthread_setaffinity_np(pthread_t thread, size_t size, const cpu_set_t *set) {
    static int (*real)(pthread_t, size_t, const cpu_set_t *);
    if (!real) real = next("pthread_setaffinity_np");
    setup();
    device_mask m = device_of(size, set);
    if (!m) return EINVAL;
    cpu_set_t host;
    host_image(m, &host);
    int rc = real(thread, sizeof host, &host);
    if (rc == 0 && pthread_equal(thread, pthread_self())) remember(m);
    return rc;
}

int pthread_getaffinity_np(pthread_t thread, size_t size, cpu_set_t *set) {
    static int (*real)(pthread_t, size_t, cpu_set_t *);
    if (!real) real = next("pthread_getaffinity_np");
    setup();
    cpu_set_t host;
    int rc = real(thread, sizeof host, &host);
    if (rc != 0) return rc;
    return report(device_view(pthread_equal(thread, pthread_self()), &host), size, set);
}

/* ---- CPU counts ----------------------------------------------------------------------------- */

long sysconf(int name) {
    static long (*real)(int);
    if (!real) real = next("sysconf");
    if (name == _SC_NPROCESSORS_ONLN || name == _SC_NPROCESSORS_CONF) {
        setup();
        return ndev;
    }
    return real(name);
}

int get_nprocs(void) { setup(); return ndev; }
int get_nprocs_conf(void) { setup(); return ndev; }
