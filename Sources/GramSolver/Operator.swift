// The solver sees the kernel only through `KernelOperator` and the preconditioner only
// through `Preconditioner.apply`.

/// A symmetric positive semi-definite `n × n` kernel matrix, applied to blocks of vectors.
///
/// Distributed implementations reduce over their ranks inside `apply`: every rank passes the
/// same block and gets the full product.
public protocol KernelOperator: AnyObject {
  var n: Int { get }
  /// `K · x` for an `n × c` block.
  func apply(_ x: DenseBlock) throws -> DenseBlock
  /// `diag(K)`.
  var diagonal: [Double] { get }
  /// How many passes over K `apply` has made (for reports and tests).
  var passes: Int { get }
  /// Columns `indices` of K (an `n × indices.count` block), read without a pass over K where
  /// the operator can (a stored symmetric kernel reads them as rows). Collective, like `apply`.
  func columns(_ indices: [Int]) throws -> DenseBlock
  /// The rows this process works on when work is shared out by rows (a distributed operator's
  /// processes own disjoint ranges that cover `0..<n`; a single process owns them all).
  var ownedRows: Range<Int> { get }
  /// Sums `values` element-wise over the operator's processes, every process getting the
  /// result (collective; nothing to do for a single process). A sum of arrays that are zero
  /// outside each process's own part is exact.
  func sumOverProcesses(_ values: inout [Double]) throws
}

extension KernelOperator {
  public var trace: Double { diagonal.reduce(0, +) }

  public var ownedRows: Range<Int> { 0..<n }
  public func sumOverProcesses(_ values: inout [Double]) throws {}

  /// Columns as products with unit vectors: one pass over K. Operators that can read entries
  /// directly replace this.
  public func columns(_ indices: [Int]) throws -> DenseBlock { try unitVectorColumns(indices) }

  /// `K · [e_j for j in indices]`: one pass over K.
  public func unitVectorColumns(_ indices: [Int]) throws -> DenseBlock {
    var e = DenseBlock(rows: n, cols: indices.count)
    for (k, j) in indices.enumerated() { e[j, k] = 1 }
    return try apply(e)
  }
}

/// An approximate inverse of `K + μI`, one shift `μ` per column.
public protocol Preconditioner: AnyObject {
  var name: String { get }
  func apply(_ r: DenseBlock, shifts: [Double]) -> DenseBlock
}

/// No preconditioning.
public final class IdentityPreconditioner: Preconditioner {
  public init() {}
  public var name: String { "none" }
  public func apply(_ r: DenseBlock, shifts: [Double]) -> DenseBlock { r }
}

/// `(diag(K) + μ)⁻¹`.
public final class JacobiPreconditioner: Preconditioner {
  let diagonal: [Double]
  public init(diagonal: [Double]) { self.diagonal = diagonal }
  public var name: String { "jacobi" }
  public func apply(_ r: DenseBlock, shifts: [Double]) -> DenseBlock {
    var z = r
    for i in 0..<r.rows { for j in 0..<r.cols { z.values[i * r.cols + j] /= diagonal[i] + shifts[j] } }
    return z
  }
}
