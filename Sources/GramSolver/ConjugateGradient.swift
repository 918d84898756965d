// Kernel ridge regression: solve (K + λI) X = Y for every column of Y and every λ.
//
// Per-column preconditioned CG (`ColumnCG`), for each active column j:
//     q = (K + λI) p;  α = (r·z)/(p·q);  x += α p;  r −= α q
//     stop when ‖r‖/‖y‖ ≤ tol;  z = M r;  β = (r·z)_new/(r·z);  p = z + β p
// Breakdown-free block PCG (`BlockCG`, Ji & Li, "A breakdown-free block conjugate gradient
// method", BIT 57, 2017), for all columns at once:
//     Q = (K + λI) P;  Δ = PᵀQ;  α = Δ⁻¹PᵀR;  X += Pα;  R −= Qα
//     Z = M R;  β = −Δ⁻¹QᵀZ;  P = orth(Z + Pβ)   (orth drops dependent directions)
// Every iteration of every system (all λ, all columns) shares one pass over K: the driver
// concatenates the direction blocks and applies the operator once. Vectors and dot products
// are float64 whatever K's storage. The recursive residual is never replaced by the true one
// mid-run; the true residual is computed once at the end.

/// The largest of `values` (0 for none), NaN when any is NaN: `Array.max()` skips a NaN or not
/// depending on where it stands, and a residual report must never ignore a column.
public func worstValue(_ values: [Double]) -> Double {
  var w = 0.0
  for v in values {
    if v.isNaN { return .nan }
    w = max(w, v)
  }
  return w
}

/// Stopping rules.
public struct StoppingRule: Sendable {
  public var tolerance: Double = 1e-6
  public var maxIterations: Int = 1000
  /// Stop a column whose residual has not fallen below `stagnationFactor` × its best of
  /// `stagnationWindow` iterations ago.
  public var stagnationWindow: Int = 100
  public var stagnationFactor: Double = 0.5
  public init() {}

  /// Whether a residual whose best values so far are `best` (one per iteration, running
  /// minimum) has stopped improving.
  func hasStagnated(_ best: [Double]) -> Bool {
    best.count > stagnationWindow && best.last! > stagnationFactor * best[best.count - 1 - stagnationWindow]
  }
}

/// The iteration of one system family `(K + λI) X = Y`.
public protocol KRRIteration: AnyObject {
  var lambda: Double { get }
  var x: DenseBlock { get }
  /// Recursive relative residuals ‖r_j‖/‖y_j‖.
  var residuals: [Double] { get }
  var finished: Bool { get }
  /// Iterations taken per column.
  var iterations: [Int] { get }
  /// Columns of the block this iteration wants multiplied by K.
  func directions() -> DenseBlock
  /// Continues with `kp = K · directions()`.
  func advance(_ kp: DenseBlock) throws
  /// The full state, for checkpoints: named blocks and vectors.
  func state() -> [String: DenseBlock]
  func restore(_ state: [String: DenseBlock]) throws
}

/// Per-column preconditioned CG that drops converged columns.
public final class ColumnCG: KRRIteration {
  public let lambda: Double
  let y: DenseBlock
  let yNorms: [Double]
  let preconditioner: Preconditioner
  let rule: StoppingRule
  public private(set) var x: DenseBlock
  var r: DenseBlock
  var p: DenseBlock
  var rz: [Double]
  var active: [Bool]
  public private(set) var iterations: [Int]
  public private(set) var residuals: [Double]
  var best: [[Double]]

  public init(y: DenseBlock, lambda: Double, preconditioner: Preconditioner, rule: StoppingRule) {
    self.y = y
    self.lambda = lambda
    self.preconditioner = preconditioner
    self.rule = rule
    yNorms = y.columnNorms().map { $0 > 0 ? $0 : 1 }
    x = DenseBlock(rows: y.rows, cols: y.cols)
    r = y
    let z = preconditioner.apply(y, shifts: Array(repeating: lambda, count: y.cols))
    p = z
    rz = Self.columnDots(y, z)
    iterations = Array(repeating: 0, count: y.cols)
    residuals = zip(y.columnNorms(), yNorms).map { $0 / $1 }
    active = residuals.map { $0 > rule.tolerance }
    best = residuals.map { [$0] }
  }

  static func columnDots(_ a: DenseBlock, _ b: DenseBlock) -> [Double] {
    var s = [Double](repeating: 0, count: a.cols)
    for i in 0..<a.rows { for j in 0..<a.cols { s[j] += a.values[i * a.cols + j] * b.values[i * a.cols + j] } }
    return s
  }

  var activeColumns: [Int] { (0..<y.cols).filter { active[$0] } }
  public var finished: Bool { !active.contains(true) }

  public func directions() -> DenseBlock { p.columns(activeColumns) }

  public func advance(_ kp: DenseBlock) throws {
    let cols = activeColumns
    let pa = p.columns(cols)
    var q = kp
    q.add(pa, scale: lambda)
    let pq = Self.columnDots(pa, q)
    var xa = x.columns(cols), ra = r.columns(cols)
    for (k, j) in cols.enumerated() {
      let alpha = pq[k] != 0 ? rz[j] / pq[k] : 0
      for i in 0..<y.rows {
        xa.values[i * cols.count + k] += alpha * pa.values[i * cols.count + k]
        ra.values[i * cols.count + k] -= alpha * q.values[i * cols.count + k]
      }
    }
    x.setColumns(cols, from: xa)
    r.setColumns(cols, from: ra)
    let norms = ra.columnNorms()
    var still: [Int] = []
    for (k, j) in cols.enumerated() {
      iterations[j] += 1
      residuals[j] = norms[k] / yNorms[j]
      best[j].append(min(best[j].last!, residuals[j]))
      if residuals[j] <= rule.tolerance || rule.hasStagnated(best[j]) || !residuals[j].isFinite { active[j] = false } else { still.append(j) }
    }
    guard !still.isEmpty else { return }
    let rs = r.columns(still)
    let z = preconditioner.apply(rs, shifts: Array(repeating: lambda, count: still.count))
    let rzNew = Self.columnDots(rs, z)
    var ps = p.columns(still)
    for (k, j) in still.enumerated() {
      let beta = rz[j] != 0 ? rzNew[k] / rz[j] : 0
      rz[j] = rzNew[k]
      for i in 0..<y.rows { ps.values[i * still.count + k] = z.values[i * still.count + k] + beta * ps.values[i * still.count + k] }
    }
    p.setColumns(still, from: ps)
  }

  public func state() -> [String: DenseBlock] {
    [
      "x": x, "r": r, "p": p,
      "rz": DenseBlock(rows: 1, cols: y.cols, values: rz),
      "active": DenseBlock(rows: 1, cols: y.cols, values: active.map { $0 ? 1 : 0 }),
      "iterations": DenseBlock(rows: 1, cols: y.cols, values: iterations.map(Double.init)),
      "residuals": DenseBlock(rows: 1, cols: y.cols, values: residuals),
      "best": DenseBlock(rows: best[0].count, cols: y.cols, values: (0..<best[0].count).flatMap { i in best.map { $0[min(i, $0.count - 1)] } }),
    ]
  }

  public func restore(_ s: [String: DenseBlock]) throws {
    guard let sx = s["x"], let sr = s["r"], let sp = s["p"], let srz = s["rz"], let sa = s["active"],
          let si = s["iterations"], let sres = s["residuals"], let sb = s["best"],
          sx.rows == y.rows, sx.cols == y.cols else { throw LinearAlgebraError(description: "CG checkpoint does not match the system") }
    x = sx; r = sr; p = sp; rz = srz.values
    active = sa.values.map { $0 != 0 }
    iterations = si.values.map { Int($0) }
    residuals = sres.values
    best = (0..<y.cols).map { j in (0..<sb.rows).map { sb[$0, j] } }
  }
}

/// Breakdown-free block PCG over all columns.
public final class BlockCG: KRRIteration {
  public let lambda: Double
  let y: DenseBlock
  let yNorms: [Double]
  let preconditioner: Preconditioner
  let rule: StoppingRule
  public private(set) var x: DenseBlock
  var r: DenseBlock
  var p: DenseBlock
  public private(set) var residuals: [Double]
  public private(set) var iterations: [Int]
  var done = false
  var best: [Double]

  public init(y: DenseBlock, lambda: Double, preconditioner: Preconditioner, rule: StoppingRule) throws {
    self.y = y
    self.lambda = lambda
    self.preconditioner = preconditioner
    self.rule = rule
    yNorms = y.columnNorms().map { $0 > 0 ? $0 : 1 }
    x = DenseBlock(rows: y.rows, cols: y.cols)
    r = y
    residuals = zip(y.columnNorms(), yNorms).map { $0 / $1 }
    iterations = Array(repeating: 0, count: y.cols)
    p = DenseBlock(rows: y.rows, cols: 0)
    best = [worstValue(residuals)]
    done = residuals.allSatisfy { $0 <= rule.tolerance }
    if !done { p = try Self.orthonormalize(preconditioner.apply(r, shifts: Array(repeating: lambda, count: y.cols))) }
    if p.cols == 0 { done = true }
  }

  /// An orthonormal basis of `w`'s columns, dropping directions whose singular value is below
  /// 1e-10 of the largest (the breakdown-free step).
  static func orthonormalize(_ w: DenseBlock) throws -> DenseBlock {
    guard w.cols > 0 else { return w }
    let (values, vectors) = try symmetricEigen(w.transposeTimes(w))
    let largest = values.last ?? 0
    let keep = (0..<values.count).filter { values[$0] > 1e-20 * largest && values[$0] > 0 }
    var basis = w.times(vectors.columns(keep))
    for (k, idx) in keep.enumerated() {
      let s = values[idx].squareRoot()
      for i in 0..<w.rows { basis.values[i * keep.count + k] /= s }
    }
    return basis
  }

  public var finished: Bool { done }
  public func directions() -> DenseBlock { p }

  public func advance(_ kp: DenseBlock) throws {
    var q = kp
    q.add(p, scale: lambda)
    let delta = p.transposeTimes(q)
    let alpha = try solveSPD(delta, p.transposeTimes(r))
    x.add(p.times(alpha))
    r.add(q.times(alpha), scale: -1)
    let norms = r.columnNorms()
    for j in 0..<y.cols where residuals[j] > rule.tolerance {
      iterations[j] += 1
    }
    residuals = zip(norms, yNorms).map { $0 / $1 }
    let worst = worstValue(residuals)
    best.append(min(best.last!, worst))
    if worst <= rule.tolerance || rule.hasStagnated(best) || !worst.isFinite { done = true; return }
    let z = preconditioner.apply(r, shifts: Array(repeating: lambda, count: y.cols))
    let beta = try solveSPD(delta, q.transposeTimes(z))
    var next = z
    next.add(p.times(beta), scale: -1)
    p = try Self.orthonormalize(next)
    if p.cols == 0 { done = true }
  }

  public func state() -> [String: DenseBlock] {
    ["x": x, "r": r, "p": p,
     "residuals": DenseBlock(rows: 1, cols: y.cols, values: residuals),
     "iterations": DenseBlock(rows: 1, cols: y.cols, values: iterations.map(Double.init)),
     "best": DenseBlock(rows: best.count, cols: 1, values: best),
     "done": DenseBlock(rows: 1, cols: 1, values: [done ? 1 : 0])]
  }

  public func restore(_ s: [String: DenseBlock]) throws {
    guard let sx = s["x"], let sr = s["r"], let sp = s["p"], let sres = s["residuals"], let si = s["iterations"],
          let sb = s["best"], let sd = s["done"], sx.rows == y.rows, sx.cols == y.cols else {
      throw LinearAlgebraError(description: "block CG checkpoint does not match the system")
    }
    x = sx; r = sr; p = sp; residuals = sres.values; iterations = si.values.map { Int($0) }
    best = sb.values; done = sd.values[0] != 0
  }
}

/// The result of solving every system.
public struct KRRSolution: Sendable {
  public let lambdas: [Double]
  /// One n × c block per λ.
  public let alpha: [DenseBlock]
  /// Iterations (of the slowest column) per λ.
  public let iterations: [Int]
  /// Worst recursive relative residual after each iteration, per λ.
  public let history: [[Double]]
  /// Final true relative residuals ‖y − (K+λI)x‖/‖y‖ per λ and column.
  public let trueResiduals: [[Double]]
  /// Passes over K, including the final residual check.
  public let passes: Int
}

/// Drives several `KRRIteration`s in lockstep: one pass over K per iteration for all of them.
public final class KRRSolver {
  public let op: KernelOperator
  public let systems: [KRRIteration]
  public let rule: StoppingRule
  public private(set) var iteration = 0
  public private(set) var history: [[Double]]

  public init(op: KernelOperator, systems: [KRRIteration], rule: StoppingRule) {
    self.op = op
    self.systems = systems
    self.rule = rule
    history = systems.map { _ in [] }
  }

  public var finished: Bool { systems.allSatisfy(\.finished) || iteration >= rule.maxIterations }

  /// The worst recursive residual over every active system.
  public var worstResidual: Double { worstValue(systems.flatMap(\.residuals)) }

  /// One iteration of every unfinished system.
  public func step() throws {
    let live = systems.indices.filter { !systems[$0].finished }
    let blocks = live.map { systems[$0].directions() }
    let kp = try op.apply(DenseBlock.concatenate(blocks, rows: op.n))
    var offset = 0
    for (k, s) in live.enumerated() {
      let width = blocks[k].cols
      try systems[s].advance(kp.columns(Array(offset ..< offset + width)))
      offset += width
    }
    for s in live { history[s].append(worstValue(systems[s].residuals)) }
    iteration += 1
  }

  /// Restores the driver's own counters from a checkpoint.
  public func restore(iteration: Int, history: [[Double]]) {
    self.iteration = iteration
    self.history = history
  }

  /// Finishes: one more pass for the true residuals.
  public func solution(targets y: DenseBlock) throws -> KRRSolution {
    let x = DenseBlock.concatenate(systems.map(\.x), rows: op.n)
    let kx = try op.apply(x)
    let yNorms = y.columnNorms().map { $0 > 0 ? $0 : 1 }
    var trueResiduals: [[Double]] = []
    for (s, system) in systems.enumerated() {
      let cols = Array(s * y.cols ..< (s + 1) * y.cols)
      var res = y - kx.columns(cols)
      res.add(system.x, scale: -system.lambda)
      trueResiduals.append(zip(res.columnNorms(), yNorms).map { $0 / $1 })
    }
    return KRRSolution(lambdas: systems.map(\.lambda), alpha: systems.map(\.x),
                       iterations: systems.map { $0.iterations.max() ?? 0 }, history: history,
                       trueResiduals: trueResiduals, passes: op.passes)
  }
}
