// Command tabby-demo rebuilds the seed's three-node Calico VXLAN cluster in
// network namespaces of its own and checks, question by question, that every
// mechanism the seed describes works:
//
//	sudo go run ./examples/tabby-demo [--keep] [--vxlan-mode CrossSubnet] [--datastore etcd://127.0.0.1:2379]
//
// It builds an underlay switch (a bridge in the namespace tabby-demo-switch)
// with master (10.4.7.60), worker1 (.61) and worker2 (.62), a router
// (10.4.7.1) with an "internet" host (198.51.100.2) behind it that has no
// route to the pod pool, runs one tabby agent per node in this one process on
// a shared datastore (an embedded in-process store unless --datastore names
// one), creates three pods through the tabby CNI plugin as a container
// runtime does (CNI ADD with K8S_POD_NAMESPACE and K8S_POD_NAME; two pods on
// worker1, one on worker2), then walks the seed's questions (Q1, Q3–Q8),
// printing the kernel state it checks and PASS or FAIL for each.
//
// It exits 0 only if every question passes. Every namespace is removed
// afterwards, also on failure and on Ctrl-C or SIGTERM; a namespace left by
// a crashed run is removed at start. With --keep the cluster stays up until
// Ctrl-C. With --vxlan-mode CrossSubnet worker2 moves to 192.0.2.62/24 behind
// the router: the master (same subnet as worker1) is then routed directly
// and worker2 through vxlan.calico.
//
// Build with -tags tabby_noetcd for a demo without the etcd client (a faster
// first compile; memory:// and bolt:// datastores only).
//
// The demo never touches the host namespace's network configuration and
// executes no binary.
package main
