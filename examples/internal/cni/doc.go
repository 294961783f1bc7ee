// Package cni is the logic of tabby's CNI plugins, tabby and tabby-ipam,
// kept out of their main packages so that it can be tested unprivileged on
// netlinktest and the memory datastore.
//
// The tabby plugin (Plugin) assigns a pod address from block IPAM (in-process
// when the IPAM type is "tabby-ipam", otherwise by delegating to the named
// IPAM plugin as the CNI spec says) and plumbs the pod with package veth.
// The IPAM handle of an attachment is "<network>.<containerID>.<ifname>";
// its addresses carry the attributes namespace, pod, node, container, network
// and ifname (GC goes by the network attribute). The
// workload key (which names the host interface) is "<namespace>.<pod>" from
// K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS, else the container ID.
//
// The plugins of one host take turns on IPAM under an flock on
// <stateDir>/ipam.lock (FileLock), as Calico's plugin does: without it,
// parallel ADDs all race for the same block record and retry.
//
// Every command is all-or-nothing: a failed ADD releases the address and
// removes the veth pair it made; DEL succeeds when there is nothing to
// remove; GC releases what CNI_GC's valid attachments do not name.
//
// # Errors
//
// Errors are CNI error objects; the codes are the spec's where one fits
// (1 incompatible version, 4 invalid environment variable, including a
// CNI_NETNS that is not a network namespace, 7 invalid network configuration,
// 11 try again later: the datastore did not answer in time or writes kept
// conflicting, 50 not available from STATUS) and tabby's own from 100:
//
//	100  pool exhausted
//	101  the pod's interface name is taken by another interface
//	102  CHECK found a difference (the message names the first one)
//	103  datastore error that retrying will not fix (pool disabled, ...)
//	104  kernel (netlink, sysctl) failure
//	105  GC finished with errors (all listed)
//	106  the datastore is corrupt (damaged bolt file, undecodable record):
//	     nothing was written; repair (tabbyctl ipam check) or restore it.
//	     STATUS reports it with this code as well.
//	107  CNI_NETNS is the plugin's own network namespace: refused before
//	     anything is allocated or written
//	999  anything else
//
// The package owns nothing in the kernel or the datastore itself: veth and
// ipam own what they make.
package cni
