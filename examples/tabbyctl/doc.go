// Command tabbyctl inspects and edits tabby's datastore: IPAM pools, blocks
// and allocations, and the reflector's node announcements. Tables are for
// people, -o json for scripts; errors go to stderr with a non-zero exit
// (1: the command failed or ipam check found problems, 2: usage).
//
//	tabbyctl [--datastore URL] [--timeout 30s] COMMAND
//
// The datastore URL (default bolt:///var/lib/tabby/tabby.db, or
// $TABBY_DATASTORE) is any datastore/dsn URL: bolt:///path,
// etcd://h1:2379,h2:2379?ca=&cert=&key=&username=&password-file=&prefix=
// or memory://. A bolt file that does not exist is an error (tabbyctl does
// not create one).
//
// Commands:
//
//	ipam show [--blocks] [-o table|json]
//	    per pool: total, allocated, free; with --blocks per block its CIDR,
//	    affinity ("host:<node>" or ""), allocated and free. JSON:
//	    {"pools":[{"name","cidr","total","allocated","free",
//	      "blocks":[{"cidr","affinity","allocated","free"}]}]}
//	ipam check [--fix]
//	    the store file's own check (bolt: every page, both meta pages, each
//	    record) then the IPAM consistency report (dangling handles, orphan
//	    allocations, affinity mismatches, corrupt records); exit 1 when it
//	    finds any. --fix repairs the IPAM problems (ipam.Repair: handle and
//	    host records rebuilt from the blocks, so live pods keep their
//	    addresses) and exits 1 only if some could not be fixed
//	ipam restore [--from FILE]
//	    for a bolt store that is corrupt (every command then fails with
//	    "datastore: corrupt"): stop the agent, then replace the file with
//	    its backup (default the file + ".bak", kept by every open while the
//	    store is healthy); the damaged file is kept as FILE.corrupt-<time>.
//	    Run ipam check --fix afterwards
//	ipam release --ip ADDR | --handle HANDLE
//	    free one address, or every address of a handle
//	    (<network>.<containerID>.<ifname> for the CNI plugins)
//	ipam release-host --host NODE
//	    for a node removed from the cluster for good (a running node would
//	    claim new blocks): free its tunnel address, delete its empty blocks,
//	    make its other blocks affine to no host (their addresses stay valid
//	    until their handles are released or GC runs) and remove its host
//	    record; it also scans every block for ones affine to NODE. Running it
//	    again does nothing ("nothing to release")
//	pools list [-o table|json]
//	pools add --cidr CIDR [--name NAME] [--block-size 26]
//	          [--vxlan-mode Always|CrossSubnet|Never] [--nat-outgoing=true] [--disabled]
//	pools delete NAME
//	    only a pool without allocations
//	peers [-o table|json] [--prefix P]
//	    the reflector's announcements: node, node IP, tunnel IP, tunnel MAC,
//	    blocks, borrowed addresses and the writer's time of the last
//	    heartbeat
//
// Example:
//
//	$ tabbyctl ipam show --blocks
//	POOL           CIDR           TOTAL  ALLOCATED  FREE   STATE
//	10.244.0.0-16  10.244.0.0/16  65536  1          65535  enabled
//
//	BLOCK              AFFINITY      ALLOCATED  FREE
//	10.244.235.128/26  host:worker1  1          63
package main
