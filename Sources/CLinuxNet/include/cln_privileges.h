// Identity and capability switching for `mcrelay daemon --user` (capget/capset and the
// capability prctls are not in Swift's Glibc module, and libcap is not a dependency).
// Capability sets are 64-bit masks: bit n is capability n (CAP_NET_ADMIN = 12, CAP_NET_RAW = 13).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// The calling thread's capability sets. Returns 0 or -errno.
int cln_capabilities(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable);

// The ambient set, read with PR_CAP_AMBIENT_IS_SET for every capability the kernel knows.
uint64_t cln_ambient_capabilities(void);

// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap, or probed).
int cln_last_capability(void);

// Becomes uid/gid (real, effective and saved) with `gid` as the only group, keeping exactly
// the capabilities in `keep` as effective, permitted, inheritable and ambient (so programs it
// execs, the workers, get them too), dropping every other one from the bounding set and
// setting no_new_privs. Capabilities are per thread: this applies to the calling thread and
// to the process's main thread (signalled: Swift's async main parks it where glibc's
// setresuid does not reach); glibc moves every other thread to uid/gid, which clears their
// capabilities. Must run as root. Returns 0, or -errno with *step naming the step that
// failed (a static string).
int cln_switch_identity(uid_t uid, gid_t gid, uint64_t keep, const char **step);
