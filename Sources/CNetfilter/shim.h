// Glue between Swift and libnftnl + libmnl: includes, and functions for what Swift cannot import
// (macros, errno). Nothing else belongs here.
#ifndef NFTPOOL_CNETFILTER_SHIM_H
#define NFTPOOL_CNETFILTER_SHIM_H

// <netinet/in.h> first: after any <linux/...> header Glibc and linux/in.h clash.
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

// setns(2) is a GNU extension that <sched.h> hides without _GNU_SOURCE.
#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif
extern int setns(int fd, int nstype);
static inline int nftpool_enter_net_namespace(int fd) { return setns(fd, CLONE_NEWNET); }

static inline int nftpool_errno(void) { return errno; }
static inline void nftpool_set_errno(int value) { errno = value; }
static inline size_t nftpool_mnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }
static inline size_t nftpool_nlmsg_align(size_t len) { return NLMSG_ALIGN(len); }
static inline size_t nftpool_nlmsg_hdrlen(void) { return MNL_NLMSG_HDRLEN; }

#endif
