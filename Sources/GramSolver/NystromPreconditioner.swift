import CLAPACK
import GramMicroKernels

/// The randomized Nyström preconditioner of Frangella, Tropp & Udell, "Randomized Nyström
/// preconditioning" (SIAM J. Matrix Anal. Appl. 44, 2023), Algorithms 2.1 and 5.1.
///
/// Built from one pass over K: with a random orthonormal test matrix Ω (n × r),
///   Y = KΩ,  ν = √n·ε·‖Y‖,  Y_ν = Y + νΩ,  C = chol(ΩᵀY_ν),  B = Y_ν C⁻¹ = U Σ Vᵀ,
///   K̂ = U Λ̂ Uᵀ with Λ̂ = max(0, Σ² − ν),
/// and applied to `K + μI` by the Woodbury identity:
///   P⁻¹ = (λ̂_r + μ)·U (Λ̂ + μI)⁻¹ Uᵀ + (I − UUᵀ).
/// The SVD of B comes from the eigen-decomposition of BᵀB (r × r): directions whose singular
/// value falls below 1e-7 of the largest are dropped. Cost: one apply of K to r vectors, then
/// O(n r²); applying costs 2·n·r per column.
public final class NystromPreconditioner: Preconditioner {
  /// n × k orthonormal basis of the captured range.
  let u: DenseBlock
  /// Λ̂, descending.
  public let eigenvalues: [Double]
  public let name: String

  /// A preconditioner from a low-rank approximation `K̂ = U Λ̂ Uᵀ` with `K̂ ⪯ K` (U orthonormal,
  /// Λ̂ descending).
  init(basis: DenseBlock, eigenvalues: [Double], name: String) {
    u = basis
    self.eigenvalues = eigenvalues
    self.name = name
  }

  public init(operator op: KernelOperator, rank requested: Int, seed: UInt64 = 0x5eed) throws {
    let n = op.n
    let r = max(1, min(requested, n))
    // Ω: Gaussian, orthonormalised by Cholesky-QR twice.
    var rng = NormalGenerator(seed: seed)
    var omega = DenseBlock(rows: n, cols: r)
    for k in omega.values.indices { omega.values[k] = rng.next() }
    for _ in 0..<2 {
      let c = try choleskyUpper(omega.transposeTimes(omega))
      omega = solveRightUpper(omega, c)
    }
    let y = try op.apply(omega)
    let normY = y.columnNorms().reduce(0) { $0 + $1 * $1 }.squareRoot()
    let nu = Double(n).squareRoot() * Double.ulpOfOne * normY
    var yNu = y
    yNu.add(omega, scale: nu)
    var core = omega.transposeTimes(yNu)
    // Symmetrise, then Cholesky (add a little more shift if round-off broke definiteness).
    for i in 0..<r { for j in 0..<i { let s = 0.5 * (core[i, j] + core[j, i]); core[i, j] = s; core[j, i] = s } }
    let c: DenseBlock
    do { c = try choleskyUpper(core) } catch {
      var shifted = core
      let bump = max(nu, 1e-10 * (0..<r).map { core[$0, $0] }.max()!)
      for i in 0..<r { shifted[i, i] += bump }
      c = try choleskyUpper(shifted)
    }
    let (basis, s2) = try Self.leftSingularVectors(solveRightUpper(yNu, c))
    u = basis
    eigenvalues = s2.map { max(0, $0 - nu) }
    name = "nystrom"
  }

  /// The Nyström approximation from randomly pivoted Cholesky, in blocks: Chen, Epperly, Tropp &
  /// Webber, "Randomly pivoted Cholesky: Practical approximation of a kernel matrix with few
  /// entry evaluations" (Comm. Pure Appl. Math. 2024), Algorithm 3 (block RPCholesky); used as a
  /// preconditioner for kernel ridge regression by Díaz, Epperly, Frangella, Tropp & Webber,
  /// "Robust, randomized preconditioning for kernel ridge regression" (2023).
  ///
  /// Pivots are drawn with probability proportional to the diagonal of the residual
  /// `K − FFᵀ`, `block` at a time; their columns of K (`KernelOperator.columns`: rows read
  /// from a stored kernel, no pass over K) minus what F already explains give
  /// `G = K[:, S] − F F[S, :]ᵀ`, and `F ← [F, G·H^{−1/2}]` with `H = G[S, :]` (its eigenvalues
  /// below 1e-12 of the largest dropped, so a repeated or already-explained pivot adds
  /// nothing). `FFᵀ ⪯ K` is then written as `U Λ̂ Uᵀ` (eigen-decomposition of FᵀF) and applied
  /// exactly as the sketched Nyström preconditioner. Cost: `rank` columns of K and O(n·rank²)
  /// flops, against a pass over K with `rank` columns for the sketch — at n = 60,000 and rank
  /// 1,000 seconds instead of minutes (docs/solver.md). The O(n·rank²) work is shared out by
  /// rows over a distributed operator's processes (`ownedRows`, `sumOverProcesses`).
  public static func randomlyPivotedCholesky(operator op: KernelOperator, rank requested: Int, block: Int = 100,
                                             seed: UInt64 = 0x5eed) throws -> NystromPreconditioner {
    let n = op.n
    let r = max(1, min(requested, n))
    // Work on rows is shared out over the operator's processes: each holds and updates F and
    // the residual diagonal on its own rows only; what every process needs (the residual, F at
    // the pivots, FᵀF, the basis) is summed over them. Every process samples the same pivots
    // from the same residual and seed, and computes H and its eigen-decomposition identically.
    let own = op.ownedRows
    let (lo, ownCount) = (own.lowerBound, own.count)
    var residual = op.diagonal.map { $0.isFinite ? max($0, 0) : 0 }
    let initialTrace = residual.reduce(0, +)
    var f = [Double](repeating: 0, count: ownCount * r)    // F's own rows, row-major; columns 0..<m filled
    var m = 0
    var rng = SplitMix64(seed: seed)
    while m < r {
      let total = residual.reduce(0, +)
      guard total > 1e-14 * initialTrace, total > 0 else { break }   // K is captured (numerically low rank)
      // Sample up to `block` pivots i.i.d. from the residual diagonal; repeats collapse.
      var cumulative = [Double](repeating: 0, count: n)
      var running = 0.0
      for i in 0..<n { running += residual[i]; cumulative[i] = running }
      var picked = Set<Int>()
      for _ in 0..<min(block, r - m) {
        let target = rng.unit() * running
        var lo = 0, hi = n - 1
        while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] < target { lo = mid + 1 } else { hi = mid } }
        if residual[lo] > 0 { picked.insert(lo) }
      }
      let pivots = picked.sorted()
      guard !pivots.isEmpty else { break }
      let s = pivots.count
      var g = try op.columns(pivots)                  // n × s, every row
      // H = G[S, :] − F[S, :] F[S, :]ᵀ, the same on every process.
      var h = DenseBlock(rows: s, cols: s)
      for (k, i) in pivots.enumerated() { for j in 0..<s { h[k, j] = g[i, j] } }
      if m > 0 {
        var fs = [Double](repeating: 0, count: s * m)  // F[S, 0..<m], each process filling its rows
        for (k, i) in pivots.enumerated() where own.contains(i) { for j in 0..<m { fs[k * m + j] = f[(i - lo) * r + j] } }
        try op.sumOverProcesses(&fs)
        fs.withUnsafeBufferPointer { sp in h.values.withUnsafeMutableBufferPointer { hp in
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(s), Int32(s), Int32(m), -1,
                      sp.baseAddress, Int32(m), sp.baseAddress, Int32(m), 1, hp.baseAddress, Int32(s))
        } }
        // G[own, :] −= F[own, :] F[S, :]ᵀ
        if ownCount > 0 {
          f.withUnsafeBufferPointer { fp in fs.withUnsafeBufferPointer { sp in g.values.withUnsafeMutableBufferPointer { gp in
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(ownCount), Int32(s), Int32(m), -1,
                        fp.baseAddress, Int32(r), sp.baseAddress, Int32(m), 1, gp.baseAddress! + lo * s, Int32(s))
          } } }
        }
      }
      let (values, vectors) = try symmetricEigen(h)    // ascending
      let largest = values.last ?? 0
      guard largest > 0 else { for i in pivots { residual[i] = 0 }; continue }
      let keep = (0..<s).filter { values[$0] > 1e-12 * largest }
      let q = min(keep.count, r - m)
      var w = vectors.columns(Array(keep.suffix(q)))   // s × q, scaled by λ^{-1/2}
      for (c, idx) in keep.suffix(q).enumerated() {
        let scale = 1 / values[idx].squareRoot()
        for k in 0..<s { w.values[k * q + c] *= scale }
      }
      // F[own, m..<m+q] = G[own, :] · W, and the residual diagonal on the own rows.
      var added = [Double](repeating: 0, count: ownCount * q)
      if ownCount > 0 {
        g.values.withUnsafeBufferPointer { gp in w.values.withUnsafeBufferPointer { wp in added.withUnsafeMutableBufferPointer { ap in
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(ownCount), Int32(q), Int32(s), 1,
                      gp.baseAddress! + lo * s, Int32(s), wp.baseAddress, Int32(q), 0, ap.baseAddress, Int32(q))
        } } }
      }
      var next = [Double](repeating: 0, count: n)
      for k in 0..<ownCount {
        var captured = 0.0
        for c in 0..<q {
          let v = added[k * q + c]
          f[k * r + m + c] = v
          captured += v * v
        }
        next[lo + k] = max(0, residual[lo + k] - captured)
      }
      try op.sumOverProcesses(&next)
      residual = next
      for i in pivots { residual[i] = 0 }
      m += q
    }
    guard m > 0 else { return NystromPreconditioner(basis: DenseBlock(rows: n, cols: 0), eigenvalues: [], name: "rpcholesky") }
    // F (n × m) = U Σ Wᵀ from FᵀF = W Σ² Wᵀ (summed over the processes' rows); Λ̂ = Σ², descending;
    // U = F W Σ⁻¹, each process its own rows, then summed into the whole basis.
    var gram = [Double](repeating: 0, count: m * m)
    if ownCount > 0 {
      f.withUnsafeBufferPointer { fp in gram.withUnsafeMutableBufferPointer { gp in
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(m), Int32(ownCount), 1,
                    fp.baseAddress, Int32(r), fp.baseAddress, Int32(r), 0, gp.baseAddress, Int32(m))
      } }
    }
    try op.sumOverProcesses(&gram)
    let (vk, s2) = try rightSingularFactor(gram: DenseBlock(rows: m, cols: m, values: gram))
    let k = s2.count
    var u = [Double](repeating: 0, count: n * k)
    if ownCount > 0 && k > 0 {
      f.withUnsafeBufferPointer { fp in vk.values.withUnsafeBufferPointer { vp in u.withUnsafeMutableBufferPointer { up in
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(ownCount), Int32(k), Int32(m), 1,
                    fp.baseAddress, Int32(r), vp.baseAddress, Int32(k), 0, up.baseAddress! + lo * k, Int32(k))
      } } }
    }
    f = []
    try op.sumOverProcesses(&u)
    return NystromPreconditioner(basis: DenseBlock(rows: n, cols: k, values: u), eigenvalues: s2, name: "rpcholesky")
  }

  /// `B = U Σ Vᵀ` (thin SVD, n × k, from the eigen-decomposition of BᵀB): U and Σ², descending,
  /// directions whose σ² falls below 1e-14 of the largest dropped.
  static func leftSingularVectors(_ b: DenseBlock) throws -> (DenseBlock, [Double]) {
    let (scaled, s2) = try rightSingularFactor(gram: b.transposeTimes(b))
    return (b.times(scaled), s2)
  }

  /// From `BᵀB = V Σ² Vᵀ`: `V Σ⁻¹` (k columns, σ descending, those whose σ² falls below 1e-14
  /// of the largest dropped) and Σ², so that `U = B V Σ⁻¹` — by rows, wherever B's rows are.
  static func rightSingularFactor(gram: DenseBlock) throws -> (scaled: DenseBlock, sigma2: [Double]) {
    let (s2, v) = try symmetricEigen(gram)   // ascending σ²
    let largest = s2.last ?? 0
    let keep = (0..<gram.cols).reversed().filter { s2[$0] > 1e-14 * largest }
    var scaled = v.columns(keep)
    for (c, idx) in keep.enumerated() {
      let inverse = 1 / s2[idx].squareRoot()
      for j in 0..<gram.rows { scaled.values[j * keep.count + c] *= inverse }
    }
    return (scaled, keep.map { s2[$0] })
  }

  public func apply(_ r: DenseBlock, shifts: [Double]) -> DenseBlock {
    let k = eigenvalues.count
    guard k > 0 else { return r }
    let w = u.transposeTimes(r)            // k × c
    var scaled = w
    let smallest = eigenvalues[k - 1]
    for i in 0..<k {
      for j in 0..<r.cols {
        let mu = shifts[j]
        scaled.values[i * r.cols + j] = w.values[i * r.cols + j] * ((smallest + mu) / (eigenvalues[i] + mu) - 1)
      }
    }
    var z = r
    z.add(u.times(scaled))
    return z
  }
}

/// Standard normal numbers (SplitMix64 + Box–Muller), reproducible from a seed.
struct NormalGenerator {
  var uniforms: SplitMix64
  var spare: Double?
  init(seed: UInt64) { uniforms = SplitMix64(seed: seed) }
  mutating func next() -> Double {
    if let s = spare { spare = nil; return s }
    let r = (-2 * log(uniforms.unit())).squareRoot(), t = 2 * Double.pi * uniforms.unit()
    spare = r * sin(t)
    return r * cos(t)
  }
}

#if canImport(Glibc)
import Glibc
#endif
