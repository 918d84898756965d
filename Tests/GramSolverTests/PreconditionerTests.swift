import Foundation
import Testing
@testable import GramSolver
import GramTransport

/// An operator that counts its passes and the columns it is asked for, and reads columns
/// directly (as a stored kernel does).
final class ColumnReadingOperator: KernelOperator {
  let matrix: DenseBlock
  var passes = 0
  var columnsRead = 0
  init(_ matrix: DenseBlock) { self.matrix = matrix }
  var n: Int { matrix.rows }
  var diagonal: [Double] { (0..<n).map { matrix[$0, $0] } }
  func apply(_ x: DenseBlock) throws -> DenseBlock { passes += 1; return matrix.times(x) }
  func columns(_ indices: [Int]) throws -> DenseBlock { columnsRead += indices.count; return matrix.columns(indices) }
}

/// `U Λ̂ Uᵀ` of a preconditioner.
func lowRank(_ p: NystromPreconditioner) -> DenseBlock {
  var scaled = p.u
  let k = p.eigenvalues.count
  for i in 0..<scaled.rows { for j in 0..<k { scaled.values[i * k + j] *= p.eigenvalues[j] } }
  return scaled.times(DenseBlock(rows: p.u.cols, cols: p.u.rows, values: transpose(p.u)))
}

func transpose(_ b: DenseBlock) -> [Double] {
  var t = [Double](repeating: 0, count: b.values.count)
  for i in 0..<b.rows { for j in 0..<b.cols { t[j * b.rows + i] = b.values[i * b.cols + j] } }
  return t
}

@Suite struct PreconditionerTests {
  /// A kernel of exact rank 12: RPCholesky with room for more finds all of it from its columns,
  /// without a pass over K, and stops when the residual diagonal is gone.
  @Test func rpcholeskyRecoversALowRankKernelFromColumnsAlone() throws {
    let k = randomKernel(n: 80, rank: 12, seed: 3)
    let op = ColumnReadingOperator(k)
    let p = try NystromPreconditioner.randomlyPivotedCholesky(operator: op, rank: 40, block: 5, seed: 9)
    #expect(op.passes == 0)
    #expect(op.columnsRead <= 40)
    #expect(p.eigenvalues.count == 12)
    #expect(relativeError(lowRank(p), k) < 1e-9)
    #expect(p.name == "rpcholesky")
    // U is orthonormal and Λ̂ descending.
    let gram = p.u.transposeTimes(p.u)
    for i in 0..<gram.rows { for j in 0..<gram.cols { #expect(abs(gram[i, j] - (i == j ? 1 : 0)) < 1e-10) } }
    #expect(zip(p.eigenvalues, p.eigenvalues.dropFirst()).allSatisfy { $0 >= $1 })
  }

  /// Below the kernel's rank the approximation stays under K (K − K̂ positive semi-definite), so
  /// the preconditioned system stays positive definite, and it captures most of the trace.
  @Test func rpcholeskyApproximationIsDominatedByTheKernel() throws {
    let k = randomKernel(n: 120, rank: 60, seed: 5)
    let op = ColumnReadingOperator(k)
    let p = try NystromPreconditioner.randomlyPivotedCholesky(operator: op, rank: 20, block: 7, seed: 1)
    #expect(p.eigenvalues.count == 20)
    let (values, _) = try symmetricEigen(k - lowRank(p))
    let trace = op.diagonal.reduce(0, +)
    #expect(values.first! > -1e-10 * trace)
    let residualTrace = (0..<120).map { (k - lowRank(p))[$0, $0] }.reduce(0, +)
    #expect(residualTrace < 0.5 * trace)
    #expect(residualTrace > 0)
  }

  /// As a preconditioner of K + μI it cuts block CG's iterations against none, and the solution
  /// is the same.
  @Test func rpcholeskyPreconditionsBlockCG() throws {
    let n = 150
    let k = randomKernel(n: n, rank: n, seed: 11)
    let y = randomBlock(rows: n, cols: 3, seed: 2)
    let lambda = 1e-4 * (0..<n).map { k[$0, $0] }.reduce(0, +) / Double(n)
    var shifted = k
    for i in 0..<n { shifted[i, i] += lambda }
    let exact = try solveSPD(shifted, y)
    var rule = StoppingRule()
    rule.tolerance = 1e-9
    rule.maxIterations = 2000
    func solve(_ p: Preconditioner) throws -> (Int, DenseBlock) {
      let op = DenseOperator(k)
      let system = try BlockCG(y: y, lambda: lambda, preconditioner: p, rule: rule)
      let solver = KRRSolver(op: op, systems: [system], rule: rule)
      while !solver.finished { try solver.step() }
      return (solver.iteration, system.x)
    }
    let (plain, a) = try solve(IdentityPreconditioner())
    let rp = try NystromPreconditioner.randomlyPivotedCholesky(operator: DenseOperator(k), rank: 40, block: 10)
    let (preconditioned, b) = try solve(rp)
    #expect(preconditioned < plain / 2)
    #expect(relativeError(a, exact) < 1e-6)
    #expect(relativeError(b, exact) < 1e-6)
  }

  /// The default `columns` (unit vectors through one pass) gives K's columns.
  @Test func defaultColumnsAreUnitVectorProducts() throws {
    let k = randomKernel(n: 30, rank: 30, seed: 4)
    let op = DenseOperator(k)
    #expect(try op.columns([3, 0, 29]) == k.columns([3, 0, 29]))
    #expect(op.passes == 1)
  }
}

/// `ColumnReadingOperator` as one of `communicators.count` processes (threads here): it owns an
/// even share of the rows and sums over the group.
final class SharedRowsOperator: KernelOperator {
  let base: ColumnReadingOperator
  let comm: LocalCommunicator
  init(_ matrix: DenseBlock, comm: LocalCommunicator) { base = ColumnReadingOperator(matrix); self.comm = comm }
  var n: Int { base.n }
  var passes: Int { base.passes }
  var diagonal: [Double] { base.diagonal }
  func apply(_ x: DenseBlock) throws -> DenseBlock { try base.apply(x) }
  func columns(_ indices: [Int]) throws -> DenseBlock { try base.columns(indices) }
  var ownedRows: Range<Int> { (n * comm.rank / comm.size) ..< (n * (comm.rank + 1) / comm.size) }
  func sumOverProcesses(_ values: inout [Double]) throws { try comm.allReduce(&values, .sum) }
}

@Suite struct SharedRowsPreconditionerTests {
  /// Shared out by rows over 2, 3 and 5 processes (more than some blocks of pivots, and a
  /// process with no rows at all when n < processes is not needed: 5 < n), RPCholesky gives
  /// every process the same preconditioner, bit for bit, and the one a single process builds
  /// (to rounding).
  @Test(arguments: [2, 3, 5])
  func sharedRowsAgree(processes: Int) throws {
    let k = randomKernel(n: 97, rank: 50, seed: 21)
    let alone = try NystromPreconditioner.randomlyPivotedCholesky(operator: ColumnReadingOperator(k), rank: 30, block: 7, seed: 4)
    // One thread per process (a thread pool narrower than the group would never meet).
    let group = LocalCommunicator.group(size: processes)
    let lock = NSLock()
    nonisolated(unsafe) var results = [NystromPreconditioner?](repeating: nil, count: processes)
    let done = DispatchGroup()
    for p in 0..<processes {
      done.enter()
      nonisolated(unsafe) let comm = group[p]
      Thread.detachNewThread {
        let built = try? NystromPreconditioner.randomlyPivotedCholesky(operator: SharedRowsOperator(k, comm: comm), rank: 30,
                                                                       block: 7, seed: 4)
        lock.withLock { results[p] = built }
        done.leave()
      }
    }
    done.wait()
    let built = results.compactMap { $0 }
    #expect(built.count == processes)
    for p in built {
      #expect(p.u.values == built[0].u.values)
      #expect(p.eigenvalues == built[0].eigenvalues)
    }
    #expect(built[0].eigenvalues.count == alone.eigenvalues.count)
    #expect(relativeError(lowRank(built[0]), lowRank(alone)) < 1e-9)
  }
}
