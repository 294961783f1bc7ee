// Command tabby-etcd is the tabby CNI plugin (see examples/tabby) built with
// every datastore URL that datastore/dsn opens: etcd://... and bolt URLs
// with parameters (bolt:///path?lock-timeout=10s) as well as plain bolt.
//
// The default tabby binary opens plain bolt:/// and memory:// stores only,
// so that the etcd client and gRPC are not initialised on every pod start;
// when a configuration names another store, tabby hands the call to
// tabby-etcd (exec, same environment and stdin), which it looks for next to
// its own executable and then on CNI_PATH. Install both in the CNI bin
// directory (tabby-agent --cni-bin-dir does), keep "type": "tabby" in the
// configuration, or name "type": "tabby-etcd" to skip the hand-off.
package main
