import CLAPACK
#if canImport(Glibc)
import Glibc
#endif

/// A dense `rows × cols` block of float64, row-major: an N×C set of vectors (one per column).
public struct DenseBlock: Sendable, Equatable {
  public let rows: Int
  public let cols: Int
  public var values: [Double]

  public init(rows: Int, cols: Int, values: [Double]) {
    precondition(values.count == rows * cols, "DenseBlock: shape does not match value count")
    self.rows = rows
    self.cols = cols
    self.values = values
  }

  public init(rows: Int, cols: Int) { self.init(rows: rows, cols: cols, values: [Double](repeating: 0, count: rows * cols)) }

  public subscript(i: Int, j: Int) -> Double {
    get { values[i * cols + j] }
    set { values[i * cols + j] = newValue }
  }

  /// Columns `indices`, in that order.
  public func columns(_ indices: [Int]) -> DenseBlock {
    var out = DenseBlock(rows: rows, cols: indices.count)
    for i in 0..<rows { for (k, j) in indices.enumerated() { out.values[i * indices.count + k] = values[i * cols + j] } }
    return out
  }

  /// Writes `block`'s columns into columns `indices` of self.
  public mutating func setColumns(_ indices: [Int], from block: DenseBlock) {
    precondition(block.rows == rows && block.cols == indices.count, "setColumns: shape mismatch")
    for i in 0..<rows { for (k, j) in indices.enumerated() { values[i * cols + j] = block.values[i * block.cols + k] } }
  }

  /// Blocks side by side.
  public static func concatenate(_ blocks: [DenseBlock], rows: Int) -> DenseBlock {
    let total = blocks.reduce(0) { $0 + $1.cols }
    var out = DenseBlock(rows: rows, cols: total)
    var offset = 0
    for b in blocks {
      precondition(b.rows == rows, "concatenate: row counts differ")
      for i in 0..<rows { for j in 0..<b.cols { out.values[i * total + offset + j] = b.values[i * b.cols + j] } }
      offset += b.cols
    }
    return out
  }

  /// Euclidean norm of every column.
  public func columnNorms() -> [Double] {
    var s = [Double](repeating: 0, count: cols)
    for i in 0..<rows { for j in 0..<cols { let v = values[i * cols + j]; s[j] += v * v } }
    return s.map { $0.squareRoot() }
  }

  /// `selfᵀ · other` (`cols × other.cols`).
  public func transposeTimes(_ other: DenseBlock) -> DenseBlock {
    precondition(rows == other.rows, "transposeTimes: row counts differ")
    var out = DenseBlock(rows: cols, cols: other.cols)
    if rows == 0 || cols == 0 || other.cols == 0 { return out }
    values.withUnsafeBufferPointer { a in other.values.withUnsafeBufferPointer { b in out.values.withUnsafeMutableBufferPointer { c in
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(cols), Int32(other.cols), Int32(rows),
                  1, a.baseAddress, Int32(cols), b.baseAddress, Int32(other.cols), 0, c.baseAddress, Int32(other.cols))
    } } }
    return out
  }

  /// `self · other` (`rows × other.cols`).
  public func times(_ other: DenseBlock) -> DenseBlock {
    precondition(cols == other.rows, "times: inner dimensions differ")
    var out = DenseBlock(rows: rows, cols: other.cols)
    if rows == 0 || other.cols == 0 || cols == 0 { return out }
    values.withUnsafeBufferPointer { a in other.values.withUnsafeBufferPointer { b in out.values.withUnsafeMutableBufferPointer { c in
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(other.cols), Int32(cols),
                  1, a.baseAddress, Int32(cols), b.baseAddress, Int32(other.cols), 0, c.baseAddress, Int32(other.cols))
    } } }
    return out
  }

  /// `self += scale · other`.
  public mutating func add(_ other: DenseBlock, scale: Double = 1) {
    precondition(rows == other.rows && cols == other.cols, "add: shape mismatch")
    for k in values.indices { values[k] += scale * other.values[k] }
  }

  public static func - (a: DenseBlock, b: DenseBlock) -> DenseBlock { var c = a; c.add(b, scale: -1); return c }
  public static func + (a: DenseBlock, b: DenseBlock) -> DenseBlock { var c = a; c.add(b); return c }
}

// MARK: - Small dense linear algebra (LAPACK)

/// Linear-algebra failures: a matrix that should be positive definite is not, a LAPACK routine
/// that rejected its input or did not converge, or a non-finite block. `kind` says which, so
/// that the commands can name the file and the remedy instead of LAPACK's codes.
public struct LinearAlgebraError: Error, CustomStringConvertible {
  public enum Kind: Sendable, Equatable {
    /// A Cholesky factorization met a leading minor (of this order) that is not positive.
    case notPositiveDefinite(order: Int)
    /// The input held NaN or infinite values (LAPACK would reject or propagate them).
    case notFinite
    /// The routine did not converge (LAPACK's info > 0 for an eigensolver).
    case noConvergence
    /// LAPACK rejected an argument (info < 0): an internal error, never the user's input.
    case invalidArgument(Int)
    /// Anything else (the operator's own checks).
    case other
  }

  public let description: String
  public let kind: Kind

  public init(description: String, kind: Kind = .other) {
    self.description = description
    self.kind = kind
  }

  /// The error of LAPACK routine `routine` returning `info` ≠ 0 on an `n × n` matrix.
  static func lapack(_ routine: String, info: Int32, order n: Int, positiveDefinite: Bool) -> LinearAlgebraError {
    if info < 0 {
      return LinearAlgebraError(description: "\(routine) rejected argument \(-info) (order \(n)): an internal error", kind: .invalidArgument(Int(-info)))
    }
    if positiveDefinite {
      return LinearAlgebraError(description: "a Cholesky factorization of order \(n) failed at its leading minor \(info)",
                                kind: .notPositiveDefinite(order: Int(info)))
    }
    return LinearAlgebraError(description: "the eigensolver did not converge on a matrix of order \(n)", kind: .noConvergence)
  }

  static func checkFinite(_ values: [Double]) throws {
    guard values.allSatisfy(\.isFinite) else { throw LinearAlgebraError(description: "a block holds NaN or infinite values", kind: .notFinite) }
  }
}

/// Eigen-decomposition of a symmetric `n × n` matrix: eigenvalues ascending, eigenvectors as
/// the columns of a row-major `n × n` block (`LAPACKE_dsyevd`). A 0 × 0 matrix has none; a
/// non-finite one is a `.notFinite` error.
func symmetricEigen(_ a: DenseBlock) throws -> (values: [Double], vectors: DenseBlock) {
  precondition(a.rows == a.cols, "symmetricEigen: not square")
  let n = a.rows
  guard n > 0 else { return ([], DenseBlock(rows: 0, cols: 0)) }
  try LinearAlgebraError.checkFinite(a.values)
  var m = a.values
  // Symmetrise (round-off) before the solver sees it.
  for i in 0..<n { for j in 0..<i { let s = 0.5 * (m[i * n + j] + m[j * n + i]); m[i * n + j] = s; m[j * n + i] = s } }
  var w = [Double](repeating: 0, count: n)
  let info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "U")), Int32(n), &m, Int32(n), &w)
  guard info == 0 else { throw LinearAlgebraError.lapack("LAPACKE_dsyevd", info: info, order: n, positiveDefinite: false) }
  return (w, DenseBlock(rows: n, cols: n, values: m))
}

/// Solves `a · x = b` for a small symmetric positive definite `a` (`LAPACKE_dposv`).
func solveSPD(_ a: DenseBlock, _ b: DenseBlock) throws -> DenseBlock {
  guard a.rows > 0, b.cols > 0 else { return DenseBlock(rows: b.rows, cols: b.cols) }
  try LinearAlgebraError.checkFinite(a.values)
  try LinearAlgebraError.checkFinite(b.values)
  var m = a.values, x = b.values
  let info = LAPACKE_dposv(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "U")), Int32(a.rows), Int32(b.cols), &m, Int32(a.rows), &x, Int32(b.cols))
  guard info == 0 else { throw LinearAlgebraError.lapack("LAPACKE_dposv", info: info, order: a.rows, positiveDefinite: true) }
  return DenseBlock(rows: b.rows, cols: b.cols, values: x)
}

/// Cholesky factor `a = Rᵀ R` (upper `R`, `LAPACKE_dpotrf`).
func choleskyUpper(_ a: DenseBlock) throws -> DenseBlock {
  let n = a.rows
  guard n > 0 else { return a }
  try LinearAlgebraError.checkFinite(a.values)
  var m = a.values
  let info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "U")), Int32(n), &m, Int32(n))
  guard info == 0 else { throw LinearAlgebraError.lapack("LAPACKE_dpotrf", info: info, order: n, positiveDefinite: true) }
  for i in 0..<n { for j in 0..<i { m[i * n + j] = 0 } }
  return DenseBlock(rows: n, cols: n, values: m)
}

/// `b · R⁻¹` for an upper-triangular `R` (`cblas_dtrsm`, right side).
func solveRightUpper(_ b: DenseBlock, _ r: DenseBlock) -> DenseBlock {
  var x = b.values
  r.values.withUnsafeBufferPointer { rp in
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, Int32(b.rows), Int32(b.cols), 1,
                rp.baseAddress, Int32(r.rows), &x, Int32(b.cols))
  }
  return DenseBlock(rows: b.rows, cols: b.cols, values: x)
}

/// Limits OpenBLAS to `threads` threads (one per rank when ranks share a node's cores).
public func setLinearAlgebraThreads(_ threads: Int) { openblas_set_num_threads(Int32(threads)) }

/// The core type OpenBLAS picked at load time (`openblas_get_corename`).
public var linearAlgebraCore: String { String(cString: openblas_get_corename()) }

/// The `OPENBLAS_CORETYPE` this process should have been started with, or nil when OpenBLAS
/// already picked AVX2 (or wider) kernels, or the user chose a core type.
///
/// OpenBLAS picks its kernels from cpuid's family and model; on virtual machines that report a
/// generic model (Debian's 0.3.21 on the machines of `docs/performance.md`) it falls back to
/// "Prescott", SSE3 kernels 3–5× slower than the AVX-512 ones. The core type can only be set
/// before the library loads, so `ntkgram` restarts itself with it (`main.swift`).
public func preferredLinearAlgebraCore(avx512: Bool, avx2: Bool) -> String? {
  preferredLinearAlgebraCore(current: linearAlgebraCore, userChoice: getenv("OPENBLAS_CORETYPE") != nil,
                             avx512: avx512, avx2: avx2)
}

/// The rule of `preferredLinearAlgebraCore`, given the core OpenBLAS picked.
public func preferredLinearAlgebraCore(current: String, userChoice: Bool, avx512: Bool, avx2: Bool) -> String? {
  if userChoice { return nil }
  let avx2Cores: Set = ["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"]
  if avx2Cores.contains(current.lowercased()) { return nil }
  return avx512 ? "SkylakeX" : avx2 ? "Haswell" : nil
}
