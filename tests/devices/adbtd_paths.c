/* LD_PRELOAD for native (x86-64) device programs of the emulator profile: device paths.
 *
 * An aarch64 device program runs under qemu -L <root>, which looks every absolute path up in
 * the sandbox first. A native program has no qemu in between: the paths it takes from its
 * input files (the runner's plan names /data/local/tmp/...) would name host files. These
 * wrappers of glibc's file functions give it the device's namespace instead:
 *   - /dev/...        stays the host's (the phone has /dev/null, /dev/urandom too);
 *   - /proc/..., /sys/... go to the sandbox's fake file if it has one, else to the host's
 *                     (/proc/self/..., sysfs files the profile does not fake), as qemu does;
 *   - any other absolute path goes to <root>/path, existing or not (so /data/local/tmp/x is
 *     created in the sandbox, and /usr/lib/... does not exist, as on the phone);
 *   - relative paths stay (the cwd is in the sandbox).
 * Paths already inside the root are left alone. Calls glibc makes internally (its loader,
 * locale and iconv files) bypass the PLT and keep host paths: documented in adbtd_sandbox.
 *
 * Environment: ADBTD_ROOT (canonical host path of the device's /).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int inside(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Where the device's `path` is on the host; `buf` (PATH_MAX) may hold the answer. */
static const char *device(const char *path, char *buf) {
    const char *root = getenv("ADBTD_ROOT");
    if (!root || !*root || !path || path[0] != '/' || inside(path, root) || inside(path, "/dev"))
        return path;
    int n = snprintf(buf, PATH_MAX, "%s%s", root, path);
    if (n < 0 || n >= PATH_MAX) return path;
    if (inside(path, "/proc") || inside(path, "/sys")) {
        /* the raw syscall: faccessat itself is wrapped below */
        if (syscall(SYS_faccessat, AT_FDCWD, buf, F_OK, 0) != 0) return path;
    }
    return buf;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

/* ---- open ------------------------------------------------------------------------------- */

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

#define WRAP_OPEN(name)                                                                    \
    int name(const char *path, int flags, ...) {                                            \
        va_list ap;                                                                         \
        va_start(ap, flags);                                                                \
        mode_t mode = mode_arg(flags, ap);                                                  \
        va_end(ap);                                                                         \
        char buf[PATH_MAX];                                                                 \
        REAL(name);                                                                         \
        return real(device(path, buf), flags, mode);                                        \
    }
WRAP_OPEN(open)
WRAP_OPEN(open64)

#define WRAP_OPENAT(name)                                                                  \
    int name(int dirfd, const char *path, int flags, ...) {                                 \
        va_list ap;                                                                         \
        va_start(ap, flags);                                                                \
        mode_t mode = mode_arg(flags, ap);                                                  \
        va_end(ap);                                                                         \
        char buf[PATH_MAX];                                                                 \
        REAL(name);                                                                         \
        return real(dirfd, device(path, buf), flags, mode);                                 \
    }
WRAP_OPENAT(openat)
WRAP_OPENAT(openat64)

/* The _FORTIFY_SOURCE entry points and creat: fixed arguments. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* ---- functions whose first argument is the path ----------------------------------------- */

#define WRAP_PATH(ret, name, params, ...)                                                  \
    ret name(const char *path params) {                                                     \
        char buf[PATH_MAX];                                                                 \
        REAL(name);                                                                         \
        return real(device(path, buf) __VA_ARGS__);                                         \
    }
#define P(...) , __VA_ARGS__

WRAP_PATH(int, __open_2, P(int flags), P(flags))
WRAP_PATH(int, __open64_2, P(int flags), P(flags))
WRAP_PATH(int, creat, P(mode_t mode), P(mode))
WRAP_PATH(int, creat64, P(mode_t mode), P(mode))
WRAP_PATH(FILE *, fopen, P(const char *mode), P(mode))
WRAP_PATH(FILE *, fopen64, P(const char *mode), P(mode))
WRAP_PATH(FILE *, freopen, P(const char *mode, FILE *f), P(mode, f))
WRAP_PATH(FILE *, freopen64, P(const char *mode, FILE *f), P(mode, f))
WRAP_PATH(int, stat, P(struct stat *st), P(st))
WRAP_PATH(int, stat64, P(struct stat64 *st), P(st))
WRAP_PATH(int, lstat, P(struct stat *st), P(st))
WRAP_PATH(int, lstat64, P(struct stat64 *st), P(st))
WRAP_PATH(int, access, P(int mode), P(mode))
WRAP_PATH(int, mkdir, P(mode_t mode), P(mode))
WRAP_PATH(int, rmdir, , )
WRAP_PATH(int, unlink, , )
WRAP_PATH(int, chdir, , )
WRAP_PATH(int, chmod, P(mode_t mode), P(mode))
WRAP_PATH(int, truncate, P(off_t length), P(length))
WRAP_PATH(int, truncate64, P(off64_t length), P(length))
WRAP_PATH(DIR *, opendir, , )
WRAP_PATH(ssize_t, readlink, P(char *out, size_t size), P(out, size))
WRAP_PATH(char *, realpath, P(char *resolved), P(resolved))

/* ---- functions whose path follows a directory fd ---------------------------------------- */

#define WRAP_AT(ret, name, params, ...)                                                    \
    ret name(int dirfd, const char *path params) {                                          \
        char buf[PATH_MAX];                                                                 \
        REAL(name);                                                                         \
        return real(dirfd, device(path, buf) __VA_ARGS__);                                  \
    }

WRAP_AT(int, __openat_2, P(int flags), P(flags))
WRAP_AT(int, __openat64_2, P(int flags), P(flags))
WRAP_AT(int, fstatat, P(struct stat *st, int flags), P(st, flags))
WRAP_AT(int, fstatat64, P(struct stat64 *st, int flags), P(st, flags))
WRAP_AT(int, statx, P(int flags, unsigned mask, struct statx *st), P(flags, mask, st))
WRAP_AT(int, faccessat, P(int mode, int flags), P(mode, flags))
WRAP_AT(int, mkdirat, P(mode_t mode), P(mode))
WRAP_AT(int, unlinkat, P(int flags), P(flags))
WRAP_AT(ssize_t, readlinkat, P(char *out, size_t size), P(out, size))
WRAP_AT(int, utimensat, P(const struct timespec times[2], int flags), P(times, flags))

/* ---- two paths ---------------------------------------------------------------------------- */

int rename(const char *from, const char *to) {
    char a[PATH_MAX], b[PATH_MAX];
    REAL(rename);
    return real(device(from, a), device(to, b));
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    char a[PATH_MAX], b[PATH_MAX];
    REAL(renameat);
    return real(fromfd, device(from, a), tofd, device(to, b));
}

int link(const char *from, const char *to) {
    char a[PATH_MAX], b[PATH_MAX];
    REAL(link);
    return real(device(from, a), device(to, b));
}

/* The target text of a symlink is stored as given (a device path); only where it goes maps. */
int symlink(const char *target, const char *linkpath) {
    char b[PATH_MAX];
    REAL(symlink);
    return real(target, device(linkpath, b));
}
