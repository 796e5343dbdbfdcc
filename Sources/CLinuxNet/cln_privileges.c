// See cln_privileges.h.
#define _GNU_SOURCE
#include "cln_privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

static int cap_get(struct __user_cap_data_struct data[2]) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    return syscall(SYS_capget, &header, data) == 0 ? 0 : -errno;
}

static int cap_set(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = {
        { .effective = (uint32_t)effective, .permitted = (uint32_t)permitted, .inheritable = (uint32_t)inheritable },
        { .effective = (uint32_t)(effective >> 32), .permitted = (uint32_t)(permitted >> 32),
          .inheritable = (uint32_t)(inheritable >> 32) },
    };
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -errno;
}

int cln_capabilities(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable) {
    struct __user_cap_data_struct data[2] = { 0 };
    int result = cap_get(data);
    if (result != 0) return result;
    if (effective) *effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
    if (permitted) *permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    if (inheritable) *inheritable = (uint64_t)data[0].inheritable | ((uint64_t)data[1].inheritable << 32);
    return 0;
}

int cln_last_capability(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char text[16] = { 0 };
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        if (n > 0) {
            int value = atoi(text);
            if (value > 0 && value < 64) return value;
        }
    }
    // /proc not mounted: the bounding set answers EINVAL past the last capability.
    int cap = 0;
    while (cap < 63 && prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0) cap++;
    return cap;
}

uint64_t cln_ambient_capabilities(void) {
    uint64_t mask = 0;
    int last = cln_last_capability();
    for (int cap = 0; cap <= last; cap++) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) mask |= (uint64_t)1 << cap;
    }
    return mask;
}

#define FAIL(name) do { *step = name; return -errno; } while (0)

// Out of the bounding set (needs CAP_SETPCAP in the effective set, so before the uid change
// clears it): nothing this thread or what it execs can gain a dropped capability back.
static int drop_bounding(uint64_t keep, int last, const char **step) {
    for (int cap = 0; cap <= last; cap++) {
        if (keep & ((uint64_t)1 << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) FAIL("prctl(PR_CAPBSET_DROP)");
    }
    return 0;
}

// The capability half of the switch, for the calling thread only (capabilities, the bounding
// set, keepcaps and no_new_privs are per thread). Raw system calls only: it also runs in a
// signal handler. `ids` makes it switch uid/gid/groups of this thread alone too.
static int switch_thread(uid_t uid, gid_t gid, uint64_t keep, int last, int ids, const char **step) {
    if (ids) {
        int dropped = drop_bounding(keep, last, step);
        if (dropped != 0) return dropped;
        // Keep the permitted set across the uid change (the kernel clears it otherwise).
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) FAIL("prctl(PR_SET_KEEPCAPS)");
        if (syscall(SYS_setgroups, 1, &gid) != 0) FAIL("setgroups");
        if (syscall(SYS_setresgid, gid, gid, gid) != 0) FAIL("setresgid");
        if (syscall(SYS_setresuid, uid, uid, uid) != 0) FAIL("setresuid");
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) FAIL("prctl(PR_SET_KEEPCAPS, 0)");
    }
    // Exactly `keep`, in every set; inheritable too, which ambient capabilities require.
    int result = cap_set(keep, keep, keep);
    if (result != 0) { errno = -result; FAIL("capset"); }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) FAIL("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
    for (int cap = 0; cap <= last; cap++) {
        if (!(keep & ((uint64_t)1 << cap))) continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) FAIL("prctl(PR_CAP_AMBIENT_RAISE)");
    }
    // Nothing it execs (only itself, the workers) may gain privileges (setuid bits, file
    // capabilities); ambient capabilities still pass.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) FAIL("prctl(PR_SET_NO_NEW_PRIVS)");
    // No way back: root must be gone for good.
    if (syscall(SYS_setresuid, 0, 0, 0) == 0 || syscall(SYS_setresgid, 0, 0, 0) == 0) {
        errno = EPERM;
        FAIL("check that root cannot be regained");
    }
    return 0;
}

// The main thread, when the switch runs elsewhere. Swift's async main parks the main thread
// in libdispatch, which pthread_exit()s it into a sigsuspend loop: glibc then no longer lists
// it, so glibc's setresuid does not reach it, and it would stay root with every capability
// (it is also the thread /proc/PID/status and ps show). A signal makes it switch itself.
static struct {
    uid_t uid;
    gid_t gid;
    uint64_t keep;
    int last;
    volatile sig_atomic_t done;
    volatile int result;
    const char *volatile step;
} main_switch;

static void main_switch_handler(int signal) {
    (void)signal;
    int saved = errno;
    const char *step = "";
    main_switch.result = switch_thread(main_switch.uid, main_switch.gid, main_switch.keep, main_switch.last, 1, &step);
    main_switch.step = step;
    main_switch.done = 1;
    errno = saved;
}

static int switch_main_thread(uid_t uid, gid_t gid, uint64_t keep, int last, const char **step) {
    pid_t pid = getpid();
    if (syscall(SYS_gettid) == pid) return 0;  // this is the main thread
    // Is it still a thread of ours, and still root? (A main thread that really exited is gone.)
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)pid);
    if (access(path, F_OK) != 0) return 0;

    main_switch.uid = uid;
    main_switch.gid = gid;
    main_switch.keep = keep;
    main_switch.last = last;
    main_switch.done = 0;
    int signal = SIGRTMAX - 1;
    struct sigaction action = { 0 }, previous;
    action.sa_handler = main_switch_handler;
    sigfillset(&action.sa_mask);
    if (sigaction(signal, &action, &previous) != 0) FAIL("sigaction for the main thread's switch");
    if (syscall(SYS_tgkill, pid, pid, signal) != 0) {
        int code = errno;
        sigaction(signal, &previous, NULL);
        errno = code;
        FAIL("tgkill to the main thread");
    }
    // It runs the handler at once (it only waits for signals); give it two seconds.
    for (int i = 0; i < 2000 && !main_switch.done; i++) {
        struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000000 };
        nanosleep(&pause, NULL);
    }
    sigaction(signal, &previous, NULL);
    if (!main_switch.done) { errno = ETIMEDOUT; FAIL("main thread did not switch (signal blocked?)"); }
    if (main_switch.result != 0) {
        *step = main_switch.step;
        return main_switch.result;
    }
    return 0;
}

int cln_switch_identity(uid_t uid, gid_t gid, uint64_t keep, const char **step) {
    static const char *none = "";
    *step = none;
    int last = cln_last_capability();
    int dropped = drop_bounding(keep, last, step);
    if (dropped != 0) return dropped;
    // The uid/gid change through glibc first: it applies it to every thread glibc knows
    // (their capabilities go with it: they did not ask to keep them).
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) FAIL("prctl(PR_SET_KEEPCAPS)");
    if (setgroups(1, &gid) != 0) FAIL("setgroups");
    if (setresgid(gid, gid, gid) != 0) FAIL("setresgid");
    if (setresuid(uid, uid, uid) != 0) FAIL("setresuid");
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) FAIL("prctl(PR_SET_KEEPCAPS, 0)");
    int result = switch_thread(uid, gid, keep, last, 0, step);
    if (result != 0) return result;
    return switch_main_thread(uid, gid, keep, last, step);
}
