import CLAPACK

// Block Lanczos with full reorthogonalization: an orthonormal basis Q = [Q₁ Q₂ … Q_m] of the
// block Krylov space span{S, KS, K²S, …} of a start block S, and the projection T = QᵀKQ.
//
//     S = Q₁R₀                                   (pivoted QR: dependent columns dropped)
//     W = K·Q_j;  H = QᵀW;  W −= Q·H  (twice)    (all earlier blocks, not only the last two)
//     W = Q_{j+1}·B_{j+1}                        (pivoted QR: directions below `dropTolerance`
//                                                 of ‖K·Q_j‖ dropped, so blocks may shrink)
//
// T's column block j is H (rows of blocks 1 … j) and B_{j+1} (the next block's rows); in exact
// arithmetic T is block tridiagonal. Keeping every basis vector and orthogonalizing against all of
// them costs O(n·k·b) per step and n·k doubles of memory, and makes the Ritz values and the
// functions of T exact to round-off instead of drifting as plain Lanczos does.
//
// K·Q_m = Q·T_m + Q_{m+1}·B_{m+1}·E_mᵀ, so for any function f,
//     f(K)·S ≈ Q·f(T_m)·E₁R₀
// and the "residual" coupling B_{m+1}·E_mᵀ·(coefficients) measures how far a Ritz
// approximation is from satisfying its equation (see `docs/dynamics.md`). The class holds no
// operator: the caller applies K to `pendingBlock()` (on every rank: the process is replicated,
// deterministic, and all ranks see the same all-reduced products) and hands the product back.

public final class BlockLanczos {
  public let n: Int
  /// Every basis vector, column-major `n × (dimension + pending)`.
  var basis: [Double] = []
  /// Sizes of the basis blocks; the last one is pending (not yet multiplied by K) unless the
  /// space is exhausted.
  public private(set) var blockSizes: [Int] = []
  /// Column `c` of T, rows 0 ..< `tColumns[c].count` (the rest are zero).
  var tColumns: [[Double]] = []
  /// `S = Q₁·R₀`: `b₁ × s`, row-major.
  public let startCoefficients: DenseBlock
  /// True once K·Q_m lies in span(Q): the Krylov space is invariant and every Ritz quantity exact.
  public private(set) var exhausted = false
  /// Relative size below which a new direction counts as dependent.
  public let dropTolerance: Double

  /// Starts from the `n × s` block `start` (row-major).
  public init(start: DenseBlock, dropTolerance: Double = 1e-12) throws {
    n = start.rows
    self.dropTolerance = dropTolerance
    var w = Self.columnMajor(start)
    let scale = start.columnNorms().max() ?? 0
    guard scale > 0, scale.isFinite else { throw LinearAlgebraError(description: "the start block is zero or not finite", kind: scale.isFinite ? .other : .notFinite) }
    let (q, r, kept) = try Self.pivotedQR(&w, rows: n, cols: start.cols, dropBelow: dropTolerance * scale)
    guard kept > 0 else { throw LinearAlgebraError(description: "the start block is zero") }
    startCoefficients = r
    basis = q
    blockSizes = [kept]
  }

  /// Basis vectors multiplied by K so far (the size of T).
  public var dimension: Int { exhausted ? basis.count / max(n, 1) : basis.count / max(n, 1) - (blockSizes.last ?? 0) }
  /// Steps taken (products K·Q_j received).
  public var steps: Int { exhausted ? blockSizes.count : blockSizes.count - 1 }
  /// Bytes held by the basis.
  public var basisBytes: Int { basis.count * MemoryLayout<Double>.size }

  /// The block to multiply by K next (`n × b`, row-major); nil once the space is exhausted.
  public func pendingBlock() -> DenseBlock? {
    guard !exhausted, let b = blockSizes.last else { return nil }
    let first = basis.count / n - b
    var out = DenseBlock(rows: n, cols: b)
    for j in 0..<b { for i in 0..<n { out.values[i * b + j] = basis[(first + j) * n + i] } }
    return out
  }

  /// Continues with `product = K · pendingBlock()`.
  public func advance(_ product: DenseBlock) throws {
    guard !exhausted, let b = blockSizes.last else { return }
    precondition(product.rows == n && product.cols == b, "BlockLanczos.advance: wrong shape")
    let k = basis.count / n  // all columns, the block just multiplied included
    var w = Self.columnMajor(product)
    guard w.allSatisfy({ $0.isFinite }) else { throw LinearAlgebraError(description: "the operator returned NaN or infinite values", kind: .notFinite) }
    let scale = max(product.columnNorms().max() ?? 0, Double.leastNormalMagnitude)
    // H = QᵀW, twice ("twice is enough").
    var h = [Double](repeating: 0, count: k * b)
    for _ in 0..<2 { project(&w, cols: b, k: k, into: &h) }
    var (q, r, kept) = try Self.pivotedQR(&w, rows: n, cols: b, dropBelow: dropTolerance * scale)
    if kept > 0 {
      // Once more on the normalized new block: tiny remainders lose orthogonality in the QR.
      var c = [Double](repeating: 0, count: k * kept)
      project(&q, cols: kept, k: k, into: &c)
      // The removed part belongs to H: W = Q_old·c·R + Q_new·R.
      for row in 0..<k { for j in 0..<b {
        var s = 0.0
        for l in 0..<kept { s += c[l * k + row] * r[l, j] }
        h[j * k + row] += s
      } }
      let (q2, r2, kept2) = try Self.pivotedQR(&q, rows: n, cols: kept, dropBelow: 0, pivoting: false)
      precondition(kept2 == kept)
      q = q2
      r = r2.times(r)
    }
    for j in 0..<b {
      var column = Array(h[(j * k) ..< ((j + 1) * k)])
      for l in 0..<kept { column.append(r[l, j]) }
      tColumns.append(column)
    }
    if kept == 0 {
      exhausted = true
    } else {
      basis += q
      blockSizes.append(kept)
    }
  }

  /// `c += QᵀX; X −= Q·(QᵀX)` over the first `k` basis columns (X column-major `n × cols`,
  /// c column-major `k × cols`).
  func project(_ x: inout [Double], cols: Int, k: Int, into c: inout [Double]) {
    guard k > 0, cols > 0 else { return }
    var step = [Double](repeating: 0, count: k * cols)
    basis.withUnsafeBufferPointer { q in
      cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(cols), Int32(n), 1,
                  q.baseAddress, Int32(n), x, Int32(n), 0, &step, Int32(k))
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(cols), Int32(k), -1,
                  q.baseAddress, Int32(n), step, Int32(k), 1, &x, Int32(n))
    }
    for i in c.indices { c[i] += step[i] }
  }

  /// T = QᵀKQ over the multiplied vectors (`dimension × dimension`, symmetrized).
  public func projectedMatrix() -> DenseBlock {
    let k = dimension
    var t = DenseBlock(rows: k, cols: k)
    for c in 0..<k { for (r, v) in tColumns[c].enumerated() where r < k { t[r, c] = v } }
    for i in 0..<k { for j in 0..<i { let s = 0.5 * (t[i, j] + t[j, i]); t[i, j] = s; t[j, i] = s } }
    return t
  }

  /// `B_{m+1}`, the coupling of the pending block to the last multiplied one
  /// (`pending × b_m`), with the row offset of the last multiplied block in T; nil once exhausted.
  public func lastCoupling() -> (coupling: DenseBlock, offset: Int)? {
    guard !exhausted, blockSizes.count >= 2 else { return nil }
    let k = dimension, last = blockSizes[blockSizes.count - 2], pending = blockSizes.last!
    var b = DenseBlock(rows: pending, cols: last)
    for j in 0..<last { for i in 0..<pending { b[i, j] = tColumns[k - last + j][k + i] } }
    return (b, k - last)
  }

  /// ‖B_{m+1}·E_mᵀ·x_j‖ for every column of the `dimension × p` coefficients x: the part of
  /// K·(Q·x_j) outside the basis (for a Ritz vector, its residual ‖K·v − θ·v‖). Zero once the
  /// space is exhausted.
  public func residualNorms(_ x: DenseBlock) -> [Double] {
    guard let (b, offset) = lastCoupling() else { return [Double](repeating: 0, count: x.cols) }
    precondition(x.rows == dimension, "BlockLanczos.residualNorms: wrong row count")
    let rows = DenseBlock(rows: b.cols, cols: x.cols, values: Array(x.values[(offset * x.cols) ..< ((offset + b.cols) * x.cols)]))
    return b.times(rows).columnNorms()
  }

  /// The Ritz values (ascending) and vectors of T (`dimension × dimension`, columns).
  public func ritz() throws -> (values: [Double], vectors: DenseBlock) {
    try symmetricEigen(projectedMatrix())
  }

  /// `Q·C` for `dimension × p` coefficients (row-major): `n × p`, row-major.
  public func combine(_ coefficients: DenseBlock) -> DenseBlock {
    let k = dimension, p = coefficients.cols
    precondition(coefficients.rows == k, "BlockLanczos.combine: wrong row count")
    var out = [Double](repeating: 0, count: n * p)
    if k > 0 && p > 0 {
      // Row-major out (n × p) is column-major outᵀ (p × n) = Cᵀ·Qᵀ.
      basis.withUnsafeBufferPointer { q in coefficients.values.withUnsafeBufferPointer { c in
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, Int32(p), Int32(n), Int32(k), 1,
                    c.baseAddress, Int32(p), q.baseAddress, Int32(n), 0, &out, Int32(p))
      } }
    }
    return DenseBlock(rows: n, cols: p, values: out)
  }

  /// The largest |QᵢᵀQⱼ − δᵢⱼ| over the basis (for tests).
  public func orthogonalityLoss() -> Double {
    let k = basis.count / n
    var g = [Double](repeating: 0, count: k * k)
    basis.withUnsafeBufferPointer { q in
      cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(k), Int32(n), 1,
                  q.baseAddress, Int32(n), q.baseAddress, Int32(n), 0, &g, Int32(k))
    }
    var worst = 0.0
    for i in 0..<k { for j in 0..<k { worst = max(worst, abs(g[i * k + j] - (i == j ? 1 : 0))) } }
    return worst
  }

  static func columnMajor(_ b: DenseBlock) -> [Double] {
    var out = [Double](repeating: 0, count: b.rows * b.cols)
    for i in 0..<b.rows { for j in 0..<b.cols { out[j * b.rows + i] = b.values[i * b.cols + j] } }
    return out
  }

  /// Householder QR of the column-major `rows × cols` `w`, with column pivoting unless told
  /// otherwise: `w·P = Q·R`. Keeps the leading directions whose |R_ii| exceeds `dropBelow`;
  /// returns Q (column-major `rows × kept`) and R·Pᵀ (`kept × cols`, row-major), so that
  /// w ≈ Q·(R·Pᵀ).
  static func pivotedQR(_ w: inout [Double], rows: Int, cols: Int, dropBelow: Double, pivoting: Bool = true)
    throws -> (q: [Double], r: DenseBlock, kept: Int)
  {
    let m = min(rows, cols)
    guard m > 0 else { return ([], DenseBlock(rows: 0, cols: cols), 0) }
    var jpvt = [Int32](repeating: 0, count: cols)
    var tau = [Double](repeating: 0, count: m)
    let info: Int32
    if pivoting {
      info = LAPACKE_dgeqp3(LAPACK_COL_MAJOR, Int32(rows), Int32(cols), &w, Int32(rows), &jpvt, &tau)
    } else {
      for j in 0..<cols { jpvt[j] = Int32(j + 1) }
      info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, Int32(rows), Int32(cols), &w, Int32(rows), &tau)
    }
    guard info == 0 else { throw LinearAlgebraError.lapack(pivoting ? "LAPACKE_dgeqp3" : "LAPACKE_dgeqrf", info: info, order: m, positiveDefinite: false) }
    var kept = 0
    while kept < m && abs(w[kept * rows + kept]) > dropBelow && w[kept * rows + kept].isFinite { kept += 1 }
    var r = DenseBlock(rows: kept, cols: cols)
    for i in 0..<kept { for j in i..<cols { r[i, Int(jpvt[j]) - 1] = w[j * rows + i] } }
    guard kept > 0 else { return ([], r, 0) }
    var q = Array(w[0 ..< rows * kept])
    let info2 = LAPACKE_dorgqr(LAPACK_COL_MAJOR, Int32(rows), Int32(kept), Int32(kept), &q, Int32(rows), tau)
    guard info2 == 0 else { throw LinearAlgebraError.lapack("LAPACKE_dorgqr", info: info2, order: kept, positiveDefinite: false) }
    return (q, r, kept)
  }
}
