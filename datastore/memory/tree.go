package memory

import "math/rand/v2"

// node is one key of a treap ordered by key: O(log n) get, insert and delete
// and an in-order walk from a prefix, so List and writes stay cheap with
// hundreds of thousands of keys.
type node struct {
	key         string
	val         []byte
	rev         int64
	prio        uint64
	left, right *node
}

func newNode(key string, val []byte, rev int64) *node {
	return &node{key: key, val: val, rev: rev, prio: rand.Uint64()}
}

func find(n *node, key string) *node {
	for n != nil {
		switch {
		case key < n.key:
			n = n.left
		case key > n.key:
			n = n.right
		default:
			return n
		}
	}
	return nil
}

// split returns the keys < key and the keys >= key.
func split(n *node, key string) (*node, *node) {
	if n == nil {
		return nil, nil
	}
	if n.key < key {
		l, r := split(n.right, key)
		n.right = l
		return n, r
	}
	l, r := split(n.left, key)
	n.left = r
	return l, n
}

// merge joins two treaps where every key of l is below every key of r.
func merge(l, r *node) *node {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l.right = merge(l.right, r)
		return l
	default:
		r.left = merge(l, r.left)
		return r
	}
}

// insert adds x, whose key must not be present.
func insert(n, x *node) *node {
	if n == nil {
		return x
	}
	if x.prio > n.prio {
		x.left, x.right = split(n, x.key)
		return x
	}
	if x.key < n.key {
		n.left = insert(n.left, x)
	} else {
		n.right = insert(n.right, x)
	}
	return n
}

func remove(n *node, key string) *node {
	if n == nil {
		return nil
	}
	switch {
	case key < n.key:
		n.left = remove(n.left, key)
	case key > n.key:
		n.right = remove(n.right, key)
	default:
		return merge(n.left, n.right)
	}
	return n
}

// ascend calls fn in key order for every key >= from until fn returns false.
// It reports whether the walk should continue.
func ascend(n *node, from string, fn func(*node) bool) bool {
	for n != nil {
		if n.key < from {
			n = n.right
			continue
		}
		if !ascend(n.left, from, fn) {
			return false
		}
		if !fn(n) {
			return false
		}
		n = n.right
	}
	return true
}
