/// A 64-bit checksum of bytes (FNV-1a over little-endian 8-byte words, then a final mix).
///
/// Every step is a bijection of the running state for a fixed input, so changing any single
/// word — a flipped byte, a torn write — always changes the result.
public func checksum64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
  let prime: UInt64 = 0x0000_0100_0000_01b3
  let words = bytes.count / 8
  for k in 0..<words {
    h = (h ^ bytes.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self)) &* prime
  }
  var tail: UInt64 = 0
  for k in (8 * words)..<bytes.count { tail |= UInt64(bytes[k]) << (8 * UInt64(k - 8 * words)) }
  h = (h ^ tail ^ UInt64(bytes.count) << 56) &* prime
  h ^= h >> 33; h &*= 0xff51_afd7_ed55_8ccd; h ^= h >> 33
  return h
}

/// `checksum64` of an array's bytes.
public func checksum64<T>(_ values: [T], seed: UInt64 = 0) -> UInt64 {
  values.withUnsafeBytes { checksum64($0, seed: seed) }
}

/// The 16 lowercase hex digits of a checksum.
public func hex(_ value: UInt64) -> String {
  let s = String(value, radix: 16)
  return String(repeating: "0", count: 16 - s.count) + s
}

/// `checksum64` of a sequence of `Double`s given a part at a time: the same value as
/// `checksum64` of all of them at once.
public struct StreamingChecksum64: Sendable {
  var h: UInt64
  var bytes = 0

  public init(seed: UInt64 = 0) { h = 0xcbf2_9ce4_8422_2325 ^ seed }

  public mutating func add(_ values: [Double]) {
    let prime: UInt64 = 0x0000_0100_0000_01b3
    for v in values { h = (h ^ v.bitPattern) &* prime }
    bytes += 8 * values.count
  }

  public func finish() -> UInt64 {
    var h = (self.h ^ UInt64(truncatingIfNeeded: bytes) << 56) &* 0x0000_0100_0000_01b3
    h ^= h >> 33; h &*= 0xff51_afd7_ed55_8ccd; h ^= h >> 33
    return h
  }
}

/// `checksum64` of bytes given a piece at a time (the rows of a tile, each read in place): the
/// same value as `checksum64` of all of them at once, whatever the pieces' lengths.
public struct ByteChecksum64: Sendable {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325
  var bytes = 0
  /// The bytes of an incomplete word carried to the next piece, little-endian.
  var carry: UInt64 = 0
  var carried = 0

  public init() {}

  public mutating func add(_ piece: UnsafeRawBufferPointer) {
    let prime: UInt64 = 0x0000_0100_0000_01b3
    var k = 0
    while carried > 0 && carried < 8 && k < piece.count {
      carry |= UInt64(piece[k]) << (8 * UInt64(carried))
      carried += 1; k += 1
    }
    if carried == 8 { h = (h ^ carry) &* prime; carry = 0; carried = 0 }
    let words = (piece.count - k) / 8
    for w in 0..<words { h = (h ^ piece.loadUnaligned(fromByteOffset: k + 8 * w, as: UInt64.self)) &* prime }
    k += 8 * words
    while k < piece.count {
      carry |= UInt64(piece[k]) << (8 * UInt64(carried))
      carried += 1; k += 1
    }
    bytes += piece.count
  }

  public func finish() -> UInt64 {
    var h = (self.h ^ carry ^ UInt64(truncatingIfNeeded: bytes) << 56) &* 0x0000_0100_0000_01b3
    h ^= h >> 33; h &*= 0xff51_afd7_ed55_8ccd; h ^= h >> 33
    return h
  }
}
