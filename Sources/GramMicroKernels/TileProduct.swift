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
  /// Elements from one row of `k` to the next: `cols` for a packed tile, the matrix's width
  /// for a tile read in place.
  public let ld: Int

  @inlinable
  public init(k: UnsafePointer<T>, rows: Int, cols: Int, rowStart: Int, colStart: Int,
              x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>, stride: Int, ld: Int? = nil) {
    precondition((ld ?? cols) >= cols, "TileProductShape: rows overlap")
    self.ld = ld ?? cols
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
                               rowStart: rowStart, colStart: colStart, x: x, y: y, stride: stride, ld: ld)
  }

  /// The product on a group of `columns` right-hand sides (4, 8, 12 or 16; anything else runs
  /// as 16), each width and tile kind its own specialisation.
  @inlinable @inline(__always)
  public func run(columns: Int, diagonal: Bool) {
    switch (columns, diagonal) {
    case (4, true): run(SIMD4<Double>.self, diagonal: true)
    case (4, false): run(SIMD4<Double>.self, diagonal: false)
    case (8, true): run(SIMD8<Double>.self, diagonal: true)
    case (8, false): run(SIMD8<Double>.self, diagonal: false)
    case (12, true): run(Columns12.self, diagonal: true)
    case (12, false): run(Columns12.self, diagonal: false)
    case (_, true): run(SIMD16<Double>.self, diagonal: true)
    case (_, false): run(SIMD16<Double>.self, diagonal: false)
    }
  }

  /// The product on column groups of type `V`. Float32 tiles are widened four rows at a time
  /// into a small float64 buffer first, so that the inner loop reads every value of K as a
  /// float64 broadcast (an operand of the fused multiply-add itself on AVX-512).
  @inlinable @inline(__always)
  public func run<V: ColumnVector>(_: V.Type, diagonal: Bool) {
    let m = rows, w = cols
    if T.self == Double.self {
      let kd = UnsafeRawPointer(k).assumingMemoryBound(to: Double.self)
      var i = 0
      while i + 4 <= m {
        fourRows(V.self, kd + i * ld, rowStride: ld, i: i, diagonal: diagonal)
        i += 4
      }
      while i < m { oneRow(V.self, kd + i * ld, i: i, diagonal: diagonal); i += 1 }
      return
    }
    let buffer = UnsafeMutablePointer<Double>.allocate(capacity: max(1, 4 * w))
    defer { buffer.deallocate() }
    var i = 0
    while i < m {
      let h = min(4, m - i)
      for t in 0..<h {
        let src = k + (i + t) * ld, dst = buffer + t * w
        for j in 0..<w { dst[j] = Double(src[j]) }
      }
      if h == 4 {
        fourRows(V.self, UnsafePointer(buffer), rowStride: w, i: i, diagonal: diagonal)
      } else {
        for t in 0..<h { oneRow(V.self, UnsafePointer(buffer + t * w), i: i + t, diagonal: diagonal) }
      }
      i += h
    }
  }

  /// Rows `i ..< i + 4` of the tile, their values (float64) at `r0`, `rowStride` apart.
  @inlinable @inline(__always)
  func fourRows<V: ColumnVector>(_: V.Type, _ r0: UnsafePointer<Double>, rowStride w: Int, i: Int, diagonal: Bool) {
    let p = stride
    @inline(__always) func xRow(_ r: Int) -> V { V.load(x + r * p) }
    var a0 = V(), a1 = V(), a2 = V(), a3 = V()
    let r1 = r0 + w, r2 = r1 + w, r3 = r2 + w
    if diagonal {
      for j in 0..<cols {
        let xj = xRow(colStart + j)
        a0.addProduct(r0[j], xj); a1.addProduct(r1[j], xj)
        a2.addProduct(r2[j], xj); a3.addProduct(r3[j], xj)
      }
    } else {
      let x0 = xRow(rowStart + i), x1 = xRow(rowStart + i + 1), x2 = xRow(rowStart + i + 2), x3 = xRow(rowStart + i + 3)
      for j in 0..<cols {
        let k0 = r0[j], k1 = r1[j], k2 = r2[j], k3 = r3[j]
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
  }

  /// Row `i` of the tile, its values (float64) at `row`.
  @inlinable @inline(__always)
  func oneRow<V: ColumnVector>(_: V.Type, _ row: UnsafePointer<Double>, i: Int, diagonal: Bool) {
    let p = stride
    var a = V()
    let xi = V.load(x + (rowStart + i) * p)
    for j in 0..<cols {
      let kij = row[j]
      a.addProduct(kij, V.load(x + (colStart + j) * p))
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
  }
}
