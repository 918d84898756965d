// The inner loops of the solver's symmetric tile product (`GramSolver.symmetricTileProduct`),
// generic over the width of a row of right-hand sides so that each instruction set gets its own
// instantiation (AVX2 in `GramSolver`, AVX-512 in `GramMicroKernelsAVX512`). The summation order
// is fixed by the source, not by the vector width: every instantiation gives the same bits.

/// A row of up to 16 right-hand-side columns held in registers.
public protocol ColumnVector {
  init()
  static func load(_ p: UnsafePointer<Double>) -> Self
  func store(_ p: UnsafeMutablePointer<Double>)
  /// `self += k·x`, fused.
  mutating func addProduct(_ k: Double, _ x: Self)
  static func += (a: inout Self, b: Self)
}

extension SIMD4: ColumnVector where Scalar == Double {
  @inlinable @inline(__always) public static func load(_ p: UnsafePointer<Double>) -> Self { UnsafeRawPointer(p).loadUnaligned(as: Self.self) }
  @inlinable @inline(__always) public func store(_ p: UnsafeMutablePointer<Double>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: Self.self) }
  @inlinable @inline(__always) public mutating func addProduct(_ k: Double, _ x: Self) { addProduct(Self(repeating: k), x) }
}

extension SIMD8: ColumnVector where Scalar == Double {
  @inlinable @inline(__always) public static func load(_ p: UnsafePointer<Double>) -> Self { UnsafeRawPointer(p).loadUnaligned(as: Self.self) }
  @inlinable @inline(__always) public func store(_ p: UnsafeMutablePointer<Double>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: Self.self) }
  @inlinable @inline(__always) public mutating func addProduct(_ k: Double, _ x: Self) { addProduct(Self(repeating: k), x) }
}

extension SIMD16: ColumnVector where Scalar == Double {
  @inlinable @inline(__always) public static func load(_ p: UnsafePointer<Double>) -> Self { UnsafeRawPointer(p).loadUnaligned(as: Self.self) }
  @inlinable @inline(__always) public func store(_ p: UnsafeMutablePointer<Double>) { UnsafeMutableRawPointer(p).storeBytes(of: self, as: Self.self) }
  @inlinable @inline(__always) public mutating func addProduct(_ k: Double, _ x: Self) { addProduct(Self(repeating: k), x) }
}

/// Twelve columns (ten classes padded): an 8 and a 4.
@frozen
public struct Columns12: ColumnVector {
  public var a: SIMD8<Double>
  public var b: SIMD4<Double>
  @inlinable @inline(__always) public init() { a = SIMD8(); b = SIMD4() }
  @inlinable @inline(__always) init(_ a: SIMD8<Double>, _ b: SIMD4<Double>) { self.a = a; self.b = b }
  @inlinable @inline(__always) public static func load(_ p: UnsafePointer<Double>) -> Self { Self(.load(p), .load(p + 8)) }
  @inlinable @inline(__always) public func store(_ p: UnsafeMutablePointer<Double>) { a.store(p); b.store(p + 8) }
  @inlinable @inline(__always) public mutating func addProduct(_ k: Double, _ x: Self) { a.addProduct(k, x.a); b.addProduct(k, x.b) }
  @inlinable @inline(__always) public static func += (l: inout Self, r: Self) { l.a += r.a; l.b += r.b }
}

/// The operands of one column group of `symmetricTileProduct`.
@frozen
public struct TileProductShape<T: BinaryFloatingPoint> {
  public let k: UnsafePointer<T>
  public let rows: Int, cols: Int, rowStart: Int, colStart: Int
  public let x: UnsafePointer<Double>
  public let y: UnsafeMutablePointer<Double>
  public let stride: Int

  @inlinable
  public init(k: UnsafePointer<T>, rows: Int, cols: Int, rowStart: Int, colStart: Int,
              x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>, stride: Int) {
    self.k = k
    self.rows = rows
    self.cols = cols
    self.rowStart = rowStart
    self.colStart = colStart
    self.x = x
    self.y = y
    self.stride = stride
  }

  /// The same operands with `k` read as `U` (for `T == U` only).
  @inlinable
  public func retyped<U: BinaryFloatingPoint>(_: U.Type) -> TileProductShape<U> {
    precondition(U.self == T.self, "TileProductShape.retyped: another type")
    return TileProductShape<U>(k: UnsafeRawPointer(k).assumingMemoryBound(to: U.self), rows: rows, cols: cols,
                               rowStart: rowStart, colStart: colStart, x: x, y: y, stride: stride)
  }

  @inlinable @inline(__always)
  public func run<V: ColumnVector>(_: V.Type, diagonal: Bool) {
    let m = rows, w = cols, p = stride
    @inline(__always) func xRow(_ r: Int) -> V { V.load(x + r * p) }
    var i = 0
    while i + 4 <= m {
      var a0 = V(), a1 = V(), a2 = V(), a3 = V()
      let r0 = k + i * w, r1 = r0 + w, r2 = r1 + w, r3 = r2 + w
      if diagonal {
        for j in 0..<w {
          let xj = xRow(colStart + j)
          a0.addProduct(Double(r0[j]), xj); a1.addProduct(Double(r1[j]), xj)
          a2.addProduct(Double(r2[j]), xj); a3.addProduct(Double(r3[j]), xj)
        }
      } else {
        let x0 = xRow(rowStart + i), x1 = xRow(rowStart + i + 1), x2 = xRow(rowStart + i + 2), x3 = xRow(rowStart + i + 3)
        for j in 0..<w {
          let k0 = Double(r0[j]), k1 = Double(r1[j]), k2 = Double(r2[j]), k3 = Double(r3[j])
          let xj = xRow(colStart + j)
          a0.addProduct(k0, xj); a1.addProduct(k1, xj); a2.addProduct(k2, xj); a3.addProduct(k3, xj)
          let yp = y + (colStart + j) * p
          var yj = V.load(yp)
          yj.addProduct(k0, x0); yj.addProduct(k1, x1); yj.addProduct(k2, x2); yj.addProduct(k3, x3)
          yj.store(yp)
        }
      }
      @inline(__always) func add(_ a: V, _ t: Int) {
        let yp = y + (rowStart + i + t) * p
        var yi = V.load(yp)
        yi += a
        yi.store(yp)
      }
      add(a0, 0); add(a1, 1); add(a2, 2); add(a3, 3)
      i += 4
    }
    while i < m {
      var a = V()
      let row = k + i * w
      let xi = xRow(rowStart + i)
      for j in 0..<w {
        let kij = Double(row[j])
        a.addProduct(kij, xRow(colStart + j))
        if !diagonal {
          let yp = y + (colStart + j) * p
          var yj = V.load(yp)
          yj.addProduct(kij, xi)
          yj.store(yp)
        }
      }
      let yp = y + (rowStart + i) * p
      var yi = V.load(yp)
      yi += a
      yi.store(yp)
      i += 1
    }
  }
}
