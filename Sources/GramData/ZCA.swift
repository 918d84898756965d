import CLAPACK
import GramKernels
import GramStorage

// Regularized ZCA whitening (Lee et al. 2020, "Finite Versus Infinite Neural Networks: an
// Empirical Study"), fitted on the training rows X (n × d) after `scale`:
//
//   μ = (1/n) Σᵢ xᵢ                           (column mean, rows summed in order)
//   Σ = (1/n) Σᵢ (xᵢ − μ)ᵀ(xᵢ − μ)             (d × d, rows summed in order)
//   δ = ε · tr(Σ) / d                          (ε = zca_strength ≥ 0)
//   Σ + δI = V Λ Vᵀ                            (LAPACKE_dsyevd, one OpenBLAS thread)
//   W = V Λ^(−1/2) Vᵀ                          (upper triangle summed over m in order, mirrored)
//   x ↦ (x − μ) · W                            (every split; k summed in order)
//
// Every sum has one fixed order whatever the chunking of the rows or the blocking of the loops
// (the blocks only reorder which entries are updated when, never the order of one entry's
// terms), so μ, Σ and the whitened samples do not depend on ranks, threads or chunk sizes.
// The eigendecomposition is LAPACK's: the same bits on the same CPU kind and library (the
// build checks that every rank holds the same W); across CPU kinds its last bits may differ,
// which is why `build --against` and `verify` compare a stored W with a recomputed one within
// a tolerance (`zcaTolerance`) and always apply the stored one.
//
// Numerical caveat: with ε = 0 a rank-deficient Σ (fewer samples than features, constant
// pixels) has no inverse square root; eigenvalues at or below d · ulp · λ_max are refused,
// never turned into infinite or NaN whitened values.

/// The largest feature count whitened: W is d × d float64, held about four times while fitted.
public let zcaMaxFeatures = 20_000

/// The relative difference (max |ΔW| / max |W|) within which a stored W is the W of its training
/// data recomputed (LAPACK's eigenvectors may differ in their last bits between CPU kinds).
public let zcaTolerance = 1e-6

/// The running sums of a ZCA fit: the mean first (`addToMean` over every row, `finishMean`),
/// then the covariance (`addToCovariance` over every row again), then `finish`.
struct ZCAFit {
  let d: Int
  let n: Int
  let strength: Double
  let source: String
  var mean: [Double]
  /// Σ·n, upper triangle (row-major d × d; the lower part unused until `finish`).
  var scatter: [Double]

  init(features d: Int, rows n: Int, strength: Double, source: String = "the training data") throws {
    guard n >= 1 else { throw StorageError(source, "has no training samples: zca needs at least one to fit its whitening") }
    guard d <= zcaMaxFeatures else {
      throw StorageError(source, "has \(d) features per sample: zca whitening holds a \(d)×\(d) matrix (\(d * d * 8 >> 20) MiB, several copies); at most \(zcaMaxFeatures) features")
    }
    guard strength.isFinite, strength >= 0 else { throw StorageError(source, "zca_strength must be finite and at least 0 (got \(strength))") }
    self.d = d
    self.n = n
    self.strength = strength
    self.source = source
    mean = [Double](repeating: 0, count: d)
    scatter = []
  }

  mutating func addToMean(_ m: Matrix) {
    for i in 0..<m.rows { for k in 0..<d { mean[k] += m.values[i * d + k] } }
  }

  mutating func finishMean() {
    for k in 0..<d { mean[k] /= Double(n) }
    scatter = [Double](repeating: 0, count: d * d)
  }

  /// Adds the rows' centred outer products to the upper triangle. Blocked over the triangle
  /// (64 × 256 entries, L2-resident) with the rows innermost: each entry still takes its rows'
  /// terms in row order, so the result is that of the plain row-by-row loop.
  mutating func addToCovariance(_ m: Matrix) {
    let d = self.d, rows = m.rows
    var centred = m.values
    for i in 0..<rows { for k in 0..<d { centred[i * d + k] -= mean[k] } }
    let kBlock = 64, jBlock = 256
    centred.withUnsafeBufferPointer { c in
      scatter.withUnsafeMutableBufferPointer { s in
        for kb in stride(from: 0, to: d, by: kBlock) {
          let kEnd = min(kb + kBlock, d)
          for jb in stride(from: kb, to: d, by: jBlock) {
            let jEnd = min(jb + jBlock, d)
            for i in 0..<rows {
              let row = i * d
              for k in kb..<kEnd {
                let ck = c[row + k]
                let j0 = max(jb, k)
                guard j0 < jEnd else { continue }
                axpy(ck, c.baseAddress! + row, into: s.baseAddress! + k * d, j0..<jEnd)
              }
            }
          }
        }
      }
    }
  }

  /// W from the sums: one line when Σ + δI cannot be inverted (its smallest eigenvalue at or
  /// below d · ulp · its largest).
  func finish() throws -> PreprocessStatistics {
    let d = self.d
    var a = [Double](repeating: 0, count: d * d)
    var trace = 0.0
    for k in 0..<d { trace += scatter[k * d + k] / Double(n) }
    let delta = strength * trace / Double(d)
    for k in 0..<d {
      for j in k..<d {
        let v = scatter[k * d + j] / Double(n) + (j == k ? delta : 0)
        a[k * d + j] = v
        a[j * d + k] = v
      }
    }
    guard a.allSatisfy(\.isFinite) else {
      throw StorageError(source, "its covariance overflows float64: scale the data before zca")
    }
    var lambda = [Double](repeating: 0, count: d)
    // One OpenBLAS thread: a threaded reduction could make W depend on the thread count.
    let threads = openblas_get_num_threads()
    openblas_set_num_threads(1)
    let info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "U")), Int32(d), &a, Int32(d), &lambda)
    openblas_set_num_threads(threads)
    guard info == 0 else {
      throw StorageError(source, info > 0 ? "zca: the eigensolver (LAPACKE_dsyevd) did not converge on its \(d)×\(d) covariance"
                                          : "zca: LAPACKE_dsyevd rejected argument \(-info): an internal error")
    }
    let largest = lambda.last ?? 0
    guard largest > 0 else {
      throw StorageError(source, "has training samples that are all identical (after scale): their covariance is zero and zca has nothing to whiten")
    }
    guard lambda[0] > Double(d) * Double.ulpOfOne * largest else {
      throw StorageError(source, "zca with zca_strength \(strength): the regularized covariance of its \(n) training samples is singular (smallest eigenvalue \(lambda[0]), largest \(largest): fewer samples than features, or constant features), so its inverse square root is infinite; use zca_strength > 0")
    }
    // U = V Λ^(−1/2) (columns scaled); W = U Vᵀ: its upper triangle, each entry summed over m
    // ascending (blocked over k and m with j innermost, which keeps that order), then mirrored.
    var u = a
    let scale = lambda.map { 1 / $0.squareRoot() }
    for k in 0..<d { for m in 0..<d { u[k * d + m] *= scale[m] } }
    var vt = [Double](repeating: 0, count: d * d)
    for j in 0..<d { for m in 0..<d { vt[m * d + j] = a[j * d + m] } }
    var w = [Double](repeating: 0, count: d * d)
    let kBlock = 32, mBlock = 64
    u.withUnsafeBufferPointer { up in
      vt.withUnsafeBufferPointer { vp in
        w.withUnsafeMutableBufferPointer { wp in
          for kb in stride(from: 0, to: d, by: kBlock) {
            let kEnd = min(kb + kBlock, d)
            for mb in stride(from: 0, to: d, by: mBlock) {
              let mEnd = min(mb + mBlock, d)
              for k in kb..<kEnd {
                let row = k * d
                for m in mb..<mEnd {
                  axpy(up[row + m], vp.baseAddress! + m * d, into: wp.baseAddress! + row, k..<d)
                }
              }
            }
          }
          for k in 0..<d { for j in 0..<k { wp[k * d + j] = wp[j * d + k] } }
        }
      }
    }
    return PreprocessStatistics(mean: mean, whitening: w)
  }
}

/// `(x − μ) · W` for every row of `m` (already scaled): each entry sums its d terms in k order.
/// Blocked over W (32 × 512 entries) with the rows inside, which keeps that order.
func zcaWhitened(_ m: Matrix, mean: [Double], whitening w: [Double]) -> Matrix {
  let d = m.cols, rows = m.rows
  var centred = m.values
  for i in 0..<rows { for k in 0..<d { centred[i * d + k] -= mean[k] } }
  var out = [Double](repeating: 0, count: rows * d)
  let kBlock = 32, jBlock = 512
  centred.withUnsafeBufferPointer { c in
    w.withUnsafeBufferPointer { wp in
      out.withUnsafeMutableBufferPointer { o in
        for kb in stride(from: 0, to: d, by: kBlock) {
          let kEnd = min(kb + kBlock, d)
          for jb in stride(from: 0, to: d, by: jBlock) {
            let jEnd = min(jb + jBlock, d)
            for i in 0..<rows {
              let row = i * d
              for k in kb..<kEnd {
                axpy(c[row + k], wp.baseAddress! + k * d, into: o.baseAddress! + row, jb..<jEnd)
              }
            }
          }
        }
      }
    }
  }
  return Matrix(rows: rows, cols: d, values: out)
}

/// `y[j] += a · x[j]` for `j` in `range`: a multiply then an add per entry (no fused
/// multiply-add, no reassociation), so vectorised or not it gives the same bits.
@inline(__always)
func axpy(_ a: Double, _ x: UnsafePointer<Double>, into y: UnsafeMutablePointer<Double>, _ range: Range<Int>) {
  var j = range.lowerBound
  let end = range.upperBound
  while j + 4 <= end {
    let xv = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD4<Double>.self)
    let yv = UnsafeRawPointer(y + j).loadUnaligned(as: SIMD4<Double>.self)
    UnsafeMutableRawPointer(y + j).storeBytes(of: yv + a * xv, as: SIMD4<Double>.self)
    j += 4
  }
  while j < end {
    y[j] += a * x[j]
    j += 1
  }
}

/// Whether two whitening matrices are the same within `zcaTolerance` (relative to the largest
/// entry): a stored W against the W of its training data recomputed.
public func sameWhitening(_ a: [Double], _ b: [Double]) -> Bool {
  guard a.count == b.count else { return false }
  let scale = b.reduce(0) { max($0, abs($1)) }
  return zip(a, b).allSatisfy { abs($0 - $1) <= zcaTolerance * scale }
}
