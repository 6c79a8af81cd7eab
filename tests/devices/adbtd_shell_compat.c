/* LD_PRELOAD for the ADB test device's shell and tools: the host's mksh and toybox made to
 * look like Android's builds of them.
 *
 * 1. User and group names as bionic has them. Android has no /etc/passwd: bionic's getpwuid()
 *    & co. answer from a built-in table of Android IDs (AIDs: root 0, system 1000, shell 2000,
 *    ...). The host's mksh and toybox ask glibc, which reads the host's /etc/passwd, where uid
 *    2000 is nobody: toybox's id would fail with "bad uid 2000" and ls -l would show numbers.
 *    These wrappers answer from (part of) the AID table instead, for every id: a host user not
 *    in it has no name on the device either. getgrouplist() gives the shell its adb groups.
 *    When the tests do not run as root, the test user stands in for uid 2000 and is "shell".
 * 2. mksh's diagnostics without the "E: " / "W: " prefix that Debian's mksh (59c with later
 *    upstream changes) puts before them: Android's mksh R59c prints
 *    "/system/bin/sh: foo: inaccessible or not found". mksh writes each message with one
 *    write(2) call, so the prefix is dropped there.
 * Loaded with the exec hook into host tools only, never into device programs under qemu.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct aid {
    const char *name;
    unsigned id;
};

/* android_filesystem_config.h, the ids a shell session meets. */
static const struct aid AIDS[] = {
    {"root", 0}, {"system", 1000}, {"radio", 1001}, {"bluetooth", 1002}, {"graphics", 1003},
    {"input", 1004}, {"audio", 1005}, {"camera", 1006}, {"log", 1007}, {"compass", 1008},
    {"mount", 1009}, {"wifi", 1010}, {"adb", 1011}, {"install", 1012}, {"media", 1013},
    {"dhcp", 1014}, {"sdcard_rw", 1015}, {"vpn", 1016}, {"keystore", 1017}, {"usb", 1018},
    {"drm", 1019}, {"gps", 1021}, {"media_rw", 1023}, {"mtp", 1024}, {"nfc", 1027},
    {"sdcard_r", 1028}, {"logd", 1036}, {"ext_data_rw", 1078}, {"ext_obb_rw", 1079},
    {"shell", 2000}, {"cache", 2001}, {"diag", 2002}, {"net_bt_admin", 3001},
    {"net_bt", 3002}, {"inet", 3003}, {"net_raw", 3004}, {"net_admin", 3005},
    {"net_bw_stats", 3006}, {"net_bw_acct", 3007}, {"readproc", 3009}, {"wakelock", 3010},
    {"uhid", 3011}, {"readtracefs", 3012}, {"everybody", 9997}, {"misc", 9998},
    {"nobody", 9999},
};
#define N_AIDS (sizeof AIDS / sizeof *AIDS)

/* The groups adbd gives the shell (Android 12+). */
static const gid_t SHELL_GROUPS[] = {2000, 1004, 1007, 1011, 1015, 1028, 1078, 1079, 3001,
                                     3002, 3003, 3006, 3009, 3011, 3012};
#define N_SHELL_GROUPS (sizeof SHELL_GROUPS / sizeof *SHELL_GROUPS)

/* When the tests do not run as root, device commands run as the test user: ADBTD_SHELL_UID
 * (and _GID) name it, and it is "shell" on the device. */
static const struct aid *host_shell(const char *variable) {
    static struct aid shell = {"shell", 0};
    const char *id = getenv(variable);
    if (!id || !*id) return NULL;
    shell.id = (unsigned)strtoul(id, NULL, 10);
    return &shell;
}

static const struct aid *by_id(unsigned id) {
    const struct aid *shell = host_shell("ADBTD_SHELL_UID");
    if (!shell || shell->id != id) shell = host_shell("ADBTD_SHELL_GID");
    if (shell && shell->id == id) return shell;
    for (size_t i = 0; i < N_AIDS; i++)
        if (AIDS[i].id == id) return &AIDS[i];
    return NULL;
}

static const struct aid *by_name(const char *name) {
    const struct aid *shell = host_shell("ADBTD_SHELL_UID");
    if (shell && name && strcmp(name, "shell") == 0) return shell;
    for (size_t i = 0; name && i < N_AIDS; i++)
        if (strcmp(AIDS[i].name, name) == 0) return &AIDS[i];
    return NULL;
}

/* ---- passwd -------------------------------------------------------------------------------- */

static void fill_passwd(struct passwd *pw, const struct aid *a, char *name) {
    pw->pw_name = name;
    pw->pw_passwd = "";
    pw->pw_uid = pw->pw_gid = a->id;
    pw->pw_gecos = "";
    pw->pw_dir = "/";
    pw->pw_shell = "/bin/sh";          /* what bionic reports */
}

static struct passwd *static_passwd(const struct aid *a) {
    static struct passwd pw;
    static char name[32];
    if (!a) return NULL;
    strncpy(name, a->name, sizeof name - 1);
    fill_passwd(&pw, a, name);
    return &pw;
}

static int reentrant_passwd(const struct aid *a, struct passwd *pw, char *buf, size_t size,
                            struct passwd **result) {
    *result = NULL;
    if (!a) return 0;                  /* not found: no error */
    size_t n = strlen(a->name) + 1;
    if (n > size) return ERANGE;
    memcpy(buf, a->name, n);
    fill_passwd(pw, a, buf);
    *result = pw;
    return 0;
}

struct passwd *getpwuid(uid_t uid) { return static_passwd(by_id(uid)); }
struct passwd *getpwnam(const char *name) { return static_passwd(by_name(name)); }

int getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t size, struct passwd **result) {
    return reentrant_passwd(by_id(uid), pw, buf, size, result);
}

int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size,
               struct passwd **result) {
    return reentrant_passwd(by_name(name), pw, buf, size, result);
}

/* ---- group --------------------------------------------------------------------------------- */

static char *no_members[] = {NULL};

static void fill_group(struct group *gr, const struct aid *a, char *name) {
    gr->gr_name = name;
    gr->gr_passwd = "";
    gr->gr_gid = a->id;
    gr->gr_mem = no_members;
}

static struct group *static_group(const struct aid *a) {
    static struct group gr;
    static char name[32];
    if (!a) return NULL;
    strncpy(name, a->name, sizeof name - 1);
    fill_group(&gr, a, name);
    return &gr;
}

static int reentrant_group(const struct aid *a, struct group *gr, char *buf, size_t size,
                           struct group **result) {
    *result = NULL;
    if (!a) return 0;
    size_t n = strlen(a->name) + 1;
    if (n > size) return ERANGE;
    memcpy(buf, a->name, n);
    fill_group(gr, a, buf);
    *result = gr;
    return 0;
}

struct group *getgrgid(gid_t gid) { return static_group(by_id(gid)); }
struct group *getgrnam(const char *name) { return static_group(by_name(name)); }

int getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t size, struct group **result) {
    return reentrant_group(by_id(gid), gr, buf, size, result);
}

int getgrnam_r(const char *name, struct group *gr, char *buf, size_t size,
               struct group **result) {
    return reentrant_group(by_name(name), gr, buf, size, result);
}

int getgrouplist(const char *user, gid_t group, gid_t *groups, int *ngroups) {
    const struct aid *a = by_name(user);
    int shell = a && a->id == 2000 && !host_shell("ADBTD_SHELL_UID");
    int want = shell ? (int)N_SHELL_GROUPS : 1;
    int fits = want <= *ngroups;
    for (int i = 0; i < want && i < *ngroups; i++)
        groups[i] = shell ? SHELL_GROUPS[i] : group;
    *ngroups = want;
    return fits ? want : -1;
}

/* ---- mksh's diagnostics ------------------------------------------------------------------- */

static int is_mksh(void) {
    static int known = -1;
    if (known < 0) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        const char *base = strrchr(exe, '/');
        known = base && strcmp(base + 1, "mksh") == 0;
    }
    return known;
}

ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *text = buf;
    if (fd == 2 && count > 3 && (text[0] == 'E' || text[0] == 'W') && text[1] == ':'
        && text[2] == ' ' && is_mksh()) {
        ssize_t n = real(fd, text + 3, count - 3);
        return n < 0 ? n : n + 3;          /* the caller counts the prefix as written */
    }
    return real(fd, buf, count);
}
