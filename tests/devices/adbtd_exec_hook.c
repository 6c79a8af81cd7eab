/* LD_PRELOAD hook for the ADB test device: runs aarch64 ELF executables under qemu-user.
 *
 * The host kernel cannot execve() an aarch64 binary, and binfmt_misc must not be registered
 * system-wide for tests. So every execve-family call made by the sandbox shell (and its
 * children: taskset, env, ...) is checked here: if the target is an aarch64 ELF, we execute
 * qemu-aarch64-static -L <sysroot> -U LD_PRELOAD -0 <argv0> <path> <args...> instead. qemu is a
 * static binary, so this hook is not loaded into it; -U keeps it out of the guest's environment.
 * SFD_QEMU and SFD_QEMU_LD_PREFIX override the qemu binary and the sysroot.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;
typedef int (*execve_fn)(const char *, char *const[], char *const[]);

static int is_aarch64_elf(const char *path) {
    unsigned char h[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    /* ELF magic, 64-bit class, e_machine == EM_AARCH64 (183), little-endian */
    return n == (ssize_t)sizeof h && memcmp(h, "\177ELF", 4) == 0 && h[4] == 2 && h[5] == 1
        && (h[18] | (h[19] << 8)) == 183;
}

static int real_execve(const char *path, char *const argv[], char *const envp[]) {
    static execve_fn fn;
    if (!fn) fn = (execve_fn)dlsym(RTLD_NEXT, "execve");
    return fn(path, argv, envp);
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    if (!is_aarch64_elf(path)) return real_execve(path, argv, envp);
    if (access(path, X_OK) != 0) return -1;          /* same EACCES as the kernel */
    const char *qemu = getenv("SFD_QEMU"), *prefix = getenv("SFD_QEMU_LD_PREFIX");
    if (!qemu) qemu = "/usr/bin/qemu-aarch64-static";
    if (!prefix) prefix = "/usr/aarch64-linux-gnu";
    size_t argc = 0;
    while (argv && argv[argc]) argc++;
    char **args = calloc(argc + 9, sizeof *args);
    if (!args) { errno = ENOMEM; return -1; }
    size_t k = 0;
    args[k++] = (char *)qemu;
    args[k++] = "-L"; args[k++] = (char *)prefix;
    args[k++] = "-U"; args[k++] = "LD_PRELOAD";
    args[k++] = "-0"; args[k++] = argc ? argv[0] : (char *)path;
    args[k++] = (char *)path;
    for (size_t i = 1; i < argc; i++) args[k++] = argv[i];
    int rc = real_execve(qemu, args, envp);
    int saved = errno;
    free(args);
    errno = saved;
    return rc;
}

/* glibc's exec wrappers call execve internally (not through the PLT), so wrap them too. */
int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[]) {
    if (strchr(file, '/')) return execve(file, argv, envp);
    const char *path = getenv("PATH");
    if (!path) path = "/bin:/usr/bin";
    size_t flen = strlen(file);
    for (const char *p = path; *p;) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        char candidate[4096];
        if (dlen + flen + 2 < sizeof candidate) {
            memcpy(candidate, p, dlen);
            candidate[dlen] = '/';
            memcpy(candidate + dlen + 1, file, flen + 1);
            if (is_aarch64_elf(candidate) && access(candidate, X_OK) == 0)
                return execve(candidate, argv, envp);
        }
        p = *end ? end + 1 : end;
    }
    typedef int (*execvpe_fn)(const char *, char *const[], char *const[]);
    static execvpe_fn fn;
    if (!fn) fn = (execvpe_fn)dlsym(RTLD_NEXT, "execvpe");
    return fn(file, argv, envp);
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }
