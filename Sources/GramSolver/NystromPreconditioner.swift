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
  public var name: String { "nystrom" }

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
    let b = solveRightUpper(yNu, c)
    let (s2, v) = try symmetricEigen(b.transposeTimes(b))   // ascending σ²
    let largest = s2.last ?? 0
    let keep = (0..<r).reversed().filter { s2[$0] > 1e-14 * largest }
    var uu = b.times(v.columns(keep))
    for (k, idx) in keep.enumerated() {
      let sigma = s2[idx].squareRoot()
      for i in 0..<n { uu.values[i * keep.count + k] /= sigma }
    }
    u = uu
    eigenvalues = keep.map { max(0, s2[$0] - nu) }
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
