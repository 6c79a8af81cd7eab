/* LD_PRELOAD hook for the ADB test device's shell: execve() decided the way a phone's kernel
 * decides it, inside the sandbox root.
 *
 * The device shell (host mksh) and its tools (host toybox) are host programs; every exec they
 * make comes here (glibc's exec wrappers call execve internally, not through the PLT, so they
 * are all wrapped). A path is a *device* path: an absolute path outside the sandbox root is
 * looked up under it (/system/bin/sh -> <root>/system/bin/sh), so host files such as
 * /usr/bin/env or /bin/bash do not exist for the device. The folder holding the file must be
 * inside the root once resolved; the file itself may be a sandbox symlink to a host tool
 * (system/bin/sh -> mksh, system/bin/cat -> toybox; ADBTD_HOST_TOOLS lists them): those exec
 * normally. A symlink to any other host file leads nowhere, as it would on the phone.
 *
 * A *device program* (its real path is inside the root) gets the kernel's rules:
 *   - under <root>/sdcard or <root>/storage: EACCES (noexec mounts, as on a phone);
 *   - not executable / not a regular file: EACCES;
 *   - "#!interp [arg]": interp is a device path; a missing one fails with ENOENT;
 *   - an ELF must be 64-bit little-endian for the profile's machine (ADBTD_ARCH: aarch64 or
 *     x86_64), else ENOEXEC; its PT_INTERP, if any, must exist under the root, else ENOENT
 *     (a glibc program asking for /lib/ld-linux-aarch64.so.1 on a phone without glibc);
 *   - aarch64 ELFs then run as qemu-aarch64-static -L <root> -E LD_PRELOAD=<device preloads>
 *     -0 argv0 PATH ARGS (qemu is static: this hook is not loaded into it); x86-64 ELFs run
 *     natively with the device preloads appended to LD_PRELOAD;
 *   - anything else: ENOEXEC.
 * Without ADBTD_ROOT in the environment the hook does nothing.
 *
 * Environment: ADBTD_ROOT (canonical host path of the device's /), ADBTD_ARCH, ADBTD_QEMU,
 * ADBTD_HOST_TOOLS, ADBTD_DEVICE_PRELOAD (optional, space-separated: what device programs
 * preload, adbtd_affinity.c and for native programs adbtd_paths.c, built for ADBTD_ARCH).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define MAX_SCRIPT_DEPTH 4          /* the kernel's BINPRM_MAX_RECURSION */
#define SCRIPT_HEAD 256             /* the kernel's BINPRM_BUF_SIZE */
#define DEVICE_PATH "/system/bin:/system/xbin:/vendor/bin"   /* bionic's PATH, shortened */

typedef int (*execve_fn)(const char *, char *const[], char *const[]);

static int real_execve(const char *path, char *const argv[], char *const envp[]) {
    static execve_fn fn;
    if (!fn) fn = (execve_fn)dlsym(RTLD_NEXT, "execve");
    return fn(path, argv, envp);
}

static int fail(int err) {
    errno = err;
    return -1;
}

/* Return `rc` with errno as it was before cleaning up (free may change it). */
static int keep_errno(int rc, int err) {
    errno = err;
    return rc;
}

/* `path` is `dir` or below it. */
static int inside(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* A device path -> where the sandbox keeps it. Relative paths stay relative to the cwd. */
static int to_host(const char *root, const char *path, char *out, size_t size) {
    int n = path[0] == '/' && !inside(path, root)
        ? snprintf(out, size, "%s%s", root, path) : snprintf(out, size, "%s", path);
    return n < 0 || (size_t)n >= size ? fail(ENAMETOOLONG) : 0;
}

/* The folder holding `host`, symlinks resolved, must lie in the root: the phone cannot see
 * host folders (a relative path from a cwd outside the root, or one escaping with ".."). */
static int folder_visible(const char *root, const char *host) {
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(host, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == host) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - host), host);
    if (!realpath(dir, real)) return -1;                  /* ENOENT, ENOTDIR, EACCES, ELOOP */
    return inside(real, root) ? 0 : fail(ENOENT);
}

static int device_exec(const char *path, char *const argv[], char *const envp[], int depth);

/* One of the host programs the sandbox links to (ADBTD_HOST_TOOLS: mksh and toybox). Any other
 * host file a sandbox symlink leads to does not exist on the phone. */
static int host_tool(const char *real) {
    const char *tools = getenv("ADBTD_HOST_TOOLS");
    size_t n = strlen(real);
    for (const char *p = tools; p && *p;) {
        const char *end = strchrnul(p, ':');
        if ((size_t)(end - p) == n && strncmp(p, real, n) == 0) return 1;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* ---- #! scripts ------------------------------------------------------------------------ */

static int exec_script(const char *host, char *head, ssize_t n, char *const argv[],
                       char *const envp[], int depth) {
    if (depth >= MAX_SCRIPT_DEPTH) return fail(ELOOP);
    head[n] = '\0';
    char *end = strchr(head, '\n');
    if (!end) return fail(ENOEXEC);                        /* interpreter line truncated */
    *end = '\0';
    char *interp = head + 2;
    interp += strspn(interp, " \t");
    char *arg = interp + strcspn(interp, " \t");
    if (*arg) {
        *arg++ = '\0';
        arg += strspn(arg, " \t");
        for (char *t = arg + strlen(arg); t > arg && (t[-1] == ' ' || t[-1] == '\t');) *--t = 0;
    }
    if (!*interp) return fail(ENOEXEC);
    size_t argc = 0;
    while (argv && argv[argc]) argc++;
    /* The kernel's argv: interpreter (as written), its optional argument, the script path,
     * then the caller's arguments without argv[0]. */
    char **args = calloc(argc + 4, sizeof *args);
    if (!args) return fail(ENOMEM);
    size_t k = 0;
    args[k++] = interp;
    if (*arg) args[k++] = arg;
    args[k++] = (char *)host;
    for (size_t i = 1; i < argc; i++) args[k++] = argv[i];
    int rc = device_exec(interp, args, envp, depth + 1);
    int saved = errno;
    free(args);
    return keep_errno(rc, saved);
}

/* ---- ELF programs ---------------------------------------------------------------------- */

/* 1: the file names a PT_INTERP, copied to `out`; 0: it has none; -1: unreadable. */
static int elf_interp(int fd, const Elf64_Ehdr *eh, char *out, size_t size) {
    for (int i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr ph;
        off_t at = (off_t)eh->e_phoff + (off_t)i * eh->e_phentsize;
        if (pread(fd, &ph, sizeof ph, at) != (ssize_t)sizeof ph) return fail(ENOEXEC);
        if (ph.p_type != PT_INTERP) continue;
        if (ph.p_filesz == 0 || ph.p_filesz >= size) return fail(ENOEXEC);
        if (pread(fd, out, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz)
            return fail(ENOEXEC);
        out[ph.p_filesz] = '\0';
        return 1;
    }
    return 0;
}

static int exec_qemu(const char *root, const char *host, char *const argv[],
                     char *const envp[]) {
    const char *qemu = getenv("ADBTD_QEMU"), *preload = getenv("ADBTD_DEVICE_PRELOAD");
    if (!qemu) qemu = "/usr/bin/qemu-aarch64-static";
    size_t argc = 0;
    while (argv && argv[argc]) argc++;
    char **args = calloc(argc + 10, sizeof *args);
    char *guest_preload = NULL;
    if (!args || (preload && asprintf(&guest_preload, "LD_PRELOAD=%s", preload) < 0))
        return free(args), fail(ENOMEM);
    size_t k = 0;
    args[k++] = (char *)qemu;
    args[k++] = "-L"; args[k++] = (char *)root;
    /* The guest must not get this x86-64 hook; it gets the aarch64 device preloads. */
    if (guest_preload) { args[k++] = "-E"; args[k++] = guest_preload; }
    else { args[k++] = "-U"; args[k++] = "LD_PRELOAD"; }
    args[k++] = "-0"; args[k++] = argc ? argv[0] : (char *)host;
    args[k++] = (char *)host;
    for (size_t i = 1; i < argc; i++) args[k++] = argv[i];
    int rc = real_execve(qemu, args, envp);
    int saved = errno;
    free(guest_preload);
    free(args);
    return keep_errno(rc, saved);
}

/* A native (x86-64) device program: the same environment plus the device preloads. */
static int exec_native(const char *host, char *const argv[], char *const envp[]) {
    const char *preload = getenv("ADBTD_DEVICE_PRELOAD");
    if (!preload) return real_execve(host, argv, envp);
    size_t envc = 0;
    while (envp && envp[envc]) envc++;
    char **env = calloc(envc + 2, sizeof *env);
    if (!env) return fail(ENOMEM);
    char *added = NULL;              /* the LD_PRELOAD entry we build, if any */
    int seen = 0;
    size_t k = 0;
    for (size_t i = 0; i < envc; i++) {
        if (!seen && strncmp(envp[i], "LD_PRELOAD=", 11) == 0) {
            seen = 1;
            if (!strstr(envp[i] + 11, preload)
                && asprintf(&added, "%s %s", envp[i], preload) >= 0) {
                env[k++] = added;
                continue;
            }
        }
        env[k++] = envp[i];
    }
    if (!seen && asprintf(&added, "LD_PRELOAD=%s", preload) >= 0) env[k++] = added;
    int rc = real_execve(host, argv, env);
    int saved = errno;
    free(added);
    free(env);
    return keep_errno(rc, saved);
}

static int exec_elf(const char *root, const char *host, int fd, const unsigned char *head,
                    ssize_t n, char *const argv[], char *const envp[]) {
    const char *arch = getenv("ADBTD_ARCH");
    int x86 = arch && strcmp(arch, "x86_64") == 0;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)head;
    if (n < (ssize_t)sizeof *eh || head[EI_CLASS] != ELFCLASS64 || head[EI_DATA] != ELFDATA2LSB
        || eh->e_machine != (x86 ? EM_X86_64 : EM_AARCH64)
        || (eh->e_type != ET_EXEC && eh->e_type != ET_DYN))
        return fail(ENOEXEC);
    char interp[PATH_MAX], interp_host[PATH_MAX];
    int has = elf_interp(fd, eh, interp, sizeof interp);
    if (has < 0) return -1;
    if (has) {
        struct stat st;
        if (to_host(root, interp, interp_host, sizeof interp_host) < 0) return -1;
        if (stat(interp_host, &st) != 0 || !S_ISREG(st.st_mode)) return fail(ENOENT);
    }
    return x86 ? exec_native(host, argv, envp) : exec_qemu(root, host, argv, envp);
}

/* ---- the decision ---------------------------------------------------------------------- */

static int noexec_mount(const char *root, const char *real) {
    char dir[PATH_MAX];
    static const char *const mounts[] = {"sdcard", "storage"};
    for (size_t i = 0; i < sizeof mounts / sizeof *mounts; i++) {
        snprintf(dir, sizeof dir, "%s/%s", root, mounts[i]);
        if (inside(real, dir)) return 1;
    }
    return 0;
}

static int device_exec(const char *path, char *const argv[], char *const envp[], int depth) {
    const char *root = getenv("ADBTD_ROOT");
    if (!root || !*root) return real_execve(path, argv, envp);
    char host[PATH_MAX], real[PATH_MAX];
    if (to_host(root, path, host, sizeof host) < 0 || folder_visible(root, host) < 0) return -1;
    if (!realpath(host, real)) return -1;
    if (!inside(real, root))                    /* a host tool, or a symlink out of the root */
        return host_tool(real) ? real_execve(host, argv, envp) : fail(ENOENT);
    if (noexec_mount(root, real)) return fail(EACCES);
    struct stat st;
    if (stat(real, &st) != 0) return -1;
    if (!S_ISREG(st.st_mode)) return fail(EACCES);
    if (access(real, X_OK) != 0) return -1;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char head[SCRIPT_HEAD + 1];
    ssize_t n = read(fd, head, SCRIPT_HEAD);
    int rc;
    if (n >= 2 && head[0] == '#' && head[1] == '!')
        rc = exec_script(host, head, n, argv, envp, depth);
    else if (n >= 4 && memcmp(head, ELFMAG, SELFMAG) == 0)
        rc = exec_elf(root, host, fd, (unsigned char *)head, n, argv, envp);
    else
        rc = fail(ENOEXEC);
    int saved = errno;
    close(fd);
    return keep_errno(rc, saved);
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    return device_exec(path, argv, envp, 0);
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

/* PATH search as bionic does it: skip what is missing, remember EACCES, and run a file the
 * kernel refuses with ENOEXEC as a /system/bin/sh script. */
int execvpe(const char *file, char *const argv[], char *const envp[]) {
    if (!*file) return fail(ENOENT);
    if (strchr(file, '/')) return execve(file, argv, envp);
    const char *path = getenv("PATH");
    if (!path) path = DEVICE_PATH;
    int denied = 0;
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        char candidate[PATH_MAX];
        int dlen = (int)(end - p);
        int len = dlen ? snprintf(candidate, sizeof candidate, "%.*s/%s", dlen, p, file)
                       : snprintf(candidate, sizeof candidate, "%s", file);
        if (len > 0 && (size_t)len < sizeof candidate) {
            execve(candidate, argv, envp);
            if (errno == ENOEXEC) {
                size_t argc = 0;
                while (argv[argc]) argc++;
                char **args = calloc(argc + 2, sizeof *args);
                if (!args) return fail(ENOMEM);
                args[0] = "sh";
                args[1] = candidate;
                for (size_t i = 1; i < argc; i++) args[i + 1] = argv[i];
                execve("/system/bin/sh", args, envp);
                int saved = errno;
                free(args);
                return fail(saved);
            }
            if (errno == EACCES) denied = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != EISDIR && errno != ELOOP
                     && errno != ENAMETOOLONG)
                return -1;
        }
        if (!*end) break;
        p = end;
    }
    return fail(denied ? EACCES : ENOENT);
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

/* execl, execlp, execle: collect the variadic arguments. */
static char **collect(const char *arg0, va_list ap, char *const **envp) {
    va_list count;
    va_copy(count, ap);
    size_t n = 1;
    while (va_arg(count, char *)) n++;
    va_end(count);
    char **argv = calloc(n + 1, sizeof *argv);
    if (!argv) return NULL;
    argv[0] = (char *)arg0;
    for (size_t i = 1; i < n; i++) argv[i] = va_arg(ap, char *);
    (void)va_arg(ap, char *);                           /* the terminating NULL */
    if (envp) *envp = va_arg(ap, char *const *);
    return argv;
}

int execl(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    char **argv = collect(arg, ap, NULL);
    va_end(ap);
    if (!argv) return fail(ENOMEM);
    int rc = execve(path, argv, environ), saved = errno;
    free(argv);
    return keep_errno(rc, saved);
}

int execlp(const char *file, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    char **argv = collect(arg, ap, NULL);
    va_end(ap);
    if (!argv) return fail(ENOMEM);
    int rc = execvpe(file, argv, environ), saved = errno;
    free(argv);
    return keep_errno(rc, saved);
}

int execle(const char *path, const char *arg, ...) {
    va_list ap;
    char *const *envp = NULL;
    va_start(ap, arg);
    char **argv = collect(arg, ap, &envp);
    va_end(ap);
    if (!argv) return fail(ENOMEM);
    int rc = execve(path, argv, envp), saved = errno;
    free(argv);
    return keep_errno(rc, saved);
}
