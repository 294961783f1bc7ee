package ipam

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// u128 is an address (or an offset) as a 128-bit integer. IPv4 addresses use
// the low 32 bits.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) add(v u128) u128 {
	lo, c := bits.Add64(u.lo, v.lo, 0)
	hi, _ := bits.Add64(u.hi, v.hi, c)
	return u128{hi, lo}
}

func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

func (u u128) shl(n uint) u128 {
	switch {
	case n == 0:
		return u
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{hi: u.lo << (n - 64)}
	}
	return u128{hi: u.hi<<n | u.lo>>(64-n), lo: u.lo << n}
}

func (u u128) shr(n uint) u128 {
	switch {
	case n == 0:
		return u
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{lo: u.hi >> (n - 64)}
	}
	return u128{hi: u.hi >> n, lo: u.lo>>n | u.hi<<(64-n)}
}

// addrBits is 32 for IPv4 and 128 for IPv6.
func addrBits(a netip.Addr) int {
	if a.Is4() {
		return 32
	}
	return 128
}

// maxBlockIndexes caps the candidate block indexes considered in one pool:
// an IPv6 pool may hold more than 2^63 blocks; only the first 2^63 are used.
const maxBlockIndexes = 1 << 63

// numBlocks is how many blocks of size bs a pool holds (capped at 2^63).
func numBlocks(pool netip.Prefix, bs int) uint64 {
	n := bs - pool.Bits()
	if n < 0 {
		return 0
	}
	if n >= 63 {
		return maxBlockIndexes
	}
	return 1 << uint(n)
}

// blockAt returns block number idx of size bs in pool.
func blockAt(pool netip.Prefix, bs int, idx uint64) netip.Prefix {
	base := toU128(pool.Addr())
	off := u128{lo: idx}.shl(uint(addrBits(pool.Addr()) - bs))
	return netip.PrefixFrom(base.add(off).addr(pool.Addr().Is4()), bs)
}

// blockIndex is the inverse of blockAt (capped at 2^64-1 for huge pools).
func blockIndex(pool netip.Prefix, block netip.Prefix) uint64 {
	d := toU128(block.Addr()).sub(toU128(pool.Addr())).shr(uint(addrBits(pool.Addr()) - block.Bits()))
	if d.hi != 0 {
		return ^uint64(0)
	}
	return d.lo
}

// blockOf is the block of size bs that holds a.
func blockOf(a netip.Addr, bs int) netip.Prefix {
	return netip.PrefixFrom(a, bs).Masked()
}

// blockLen is the number of addresses in a block (at most 4096: blocks are
// /20 or smaller for IPv4 and /116 or smaller for IPv6).
func blockLen(block netip.Prefix) int {
	return 1 << uint(addrBits(block.Addr())-block.Bits())
}

// ordinal is a's position in its block.
func ordinal(block netip.Prefix, a netip.Addr) int {
	return int(toU128(a).lo & uint64(blockLen(block)-1))
}

// addrAt is the address at ordinal ord of block.
func addrAt(block netip.Prefix, ord int) netip.Addr {
	return toU128(block.Addr()).add(u128{lo: uint64(ord)}).addr(block.Addr().Is4())
}
