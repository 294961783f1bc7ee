package netlinktest

import "github.com/tabbynet/tabby/internal/nlbatch"

// WriteBatch performs the writes in order, one method call each (so
// FailNth, the write counter and the contention hooks see every one), and
// returns one error per write: what a batched netlink socket answers on a
// real kernel. vxlan's Manager uses it when present.
func (k *Kernel) WriteBatch(ws []nlbatch.Write) []error {
	return nlbatch.Sequential(k, ws)
}
