/// Kernel values in their storage precision: what a checkpoint and the kernel file hold, and
/// what their checksums are taken over.
public enum StoredValues: Sendable, Equatable {
  case float32([Float])
  case float64([Double])

  /// Rounds `values` (once, to nearest) to `type`.
  public init(_ values: [Double], as type: ScalarType) {
    switch type {
    case .float32: self.init(values[...], as: .float32)
    case .float64: self = .float64(values)
    }
  }

  /// Rounds `values` (once, to nearest) to `type`.
  public init(_ values: ArraySlice<Double>, as type: ScalarType) {
    switch type {
    case .float32:
      // Eight at a time (`vcvtpd2ps`); `map` converts one value per call of its closure.
      let n = values.count
      self = .float32([Float](unsafeUninitializedCapacity: n) { out, count in
        values.withUnsafeBufferPointer { src in
          let s = UnsafeRawPointer(src.baseAddress), d = UnsafeMutableRawPointer(out.baseAddress)
          var k = 0
          if let s, let d {
            while k + 8 <= n {
              let v = s.loadUnaligned(fromByteOffset: 8 * k, as: SIMD8<Double>.self)
              d.storeBytes(of: SIMD8<Float>(v), toByteOffset: 4 * k, as: SIMD8<Float>.self)
              k += 8
            }
          }
          while k < n { out[k] = Float(src[k]); k += 1 }
        }
        count = n
      })
    case .float64: self = .float64(Array(values))
    }
  }

  public var type: ScalarType {
    if case .float32 = self { return .float32 }
    return .float64
  }

  public var count: Int {
    switch self {
    case .float32(let v): v.count
    case .float64(let v): v.count
    }
  }

  public var checksum: UInt64 {
    switch self {
    case .float32(let v): checksum64(v)
    case .float64(let v): checksum64(v)
    }
  }

  /// True when no value is NaN or infinite (`FiniteScan`).
  public var allFinite: Bool {
    switch self {
    case .float32(let v):
      var scan = FiniteScan<UInt32>.float32
      v.withUnsafeBytes { scan.add($0) }
      return scan.allFinite
    case .float64(let v):
      var scan = FiniteScan<UInt64>.float64
      v.withUnsafeBytes { scan.add($0) }
      return scan.allFinite
    }
  }

  /// The values widened to `Double` (exact).
  public var doubles: [Double] {
    switch self {
    case .float32(let v): v.map(Double.init)
    case .float64(let v): v
    }
  }

  /// The row-major `m × n` block transposed to `n × m`.
  public func transposed(rows m: Int, cols n: Int) -> StoredValues {
    // In 32 × 32 blocks, so that the strided side stays in cache.
    func t<T>(_ v: [T]) -> [T] {
      var out = v
      let b = 32
      v.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
          for i0 in stride(from: 0, to: m, by: b) {
            for j0 in stride(from: 0, to: n, by: b) {
              for i in i0..<min(i0 + b, m) { for j in j0..<min(j0 + b, n) { dst[j * m + i] = src[i * n + j] } }
            }
          }
        }
      }
      return out
    }
    switch self {
    case .float32(let v): return .float32(t(v))
    case .float64(let v): return .float64(t(v))
    }
  }
}

extension H5Dataset {
  /// Writes stored values at `start` without conversion.
  public func write(_ values: StoredValues, start: [Int], count: [Int]) throws {
    switch values {
    case .float32(let v): try v.withUnsafeBufferPointer { try write($0, start: start, count: count) }
    case .float64(let v): try v.withUnsafeBufferPointer { try write($0, start: start, count: count) }
    }
  }

  /// Reads a block in the dataset's own precision.
  public func readStored(start: [Int], count: [Int]) throws -> StoredValues {
    let n = count.reduce(1, *)
    switch scalarType {
    case .float32:
      var v = [Float](repeating: 0, count: n)
      try v.withUnsafeMutableBufferPointer { try read(into: $0, start: start, count: count) }
      return .float32(v)
    case .float64:
      var v = [Double](repeating: 0, count: n)
      try v.withUnsafeMutableBufferPointer { try read(into: $0, start: start, count: count) }
      return .float64(v)
    case nil:
      throw StorageError(path, "dataset \(name) is not a float dataset")
    }
  }
}

/// A test for NaN and infinity over stored values, as their bit patterns: a branch-free OR over
/// the exponent bits (integer lanes vectorize; an early-exit search does not). A NaN or an
/// infinity is the only value whose exponent field is all ones, and adding the field's lowest
/// bit then carries into the sign bit. Blocks may be added piece by piece (rows of a tile).
struct FiniteScan<T: FixedWidthInteger & UnsignedInteger> {
  let exponent: T, low: T
  var flag: T = 0

  /// Adds the values in `bytes` (whole `T`s).
  mutating func add(_ bytes: UnsafeRawBufferPointer) {
    var f = flag
    for w in bytes.bindMemory(to: T.self) { f |= (w & exponent) &+ low }
    flag = f
  }

  var allFinite: Bool { flag >> (T.bitWidth - 1) == 0 }
}

extension FiniteScan where T == UInt32 {
  /// For float32 values.
  static var float32: Self { Self(exponent: 0x7f80_0000, low: 0x0080_0000) }
}

extension FiniteScan where T == UInt64 {
  /// For float64 values.
  static var float64: Self { Self(exponent: 0x7ff0_0000_0000_0000, low: 0x0010_0000_0000_0000) }
}
