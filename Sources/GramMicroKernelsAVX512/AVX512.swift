// The packed Gram product compiled for AVX-512 (this target's flags), 8 doubles or 16 floats
// a register. Call only when `ntkgram_cpu_has_avx512()` says so: nothing in this module may
// run on a CPU without AVX-512. The summation order is that of every other instantiation, so
// the results are bit-identical to the AVX2 ones (see `GramMicroKernels`).
import GramMicroKernels

public enum AVX512 {
  public static let doubleLanes = 8
  public static let floatLanes = 16

  public static func gram(_ a: UnsafePointer<Double>, aStride: Int, rows m: Int,
                          _ b: UnsafePointer<Double>, bStride: Int, cols n: Int, depth: Int,
                          into c: UnsafeMutablePointer<Double>, ldc: Int,
                          workspace: UnsafeMutablePointer<Double>, blocking: GramBlocking, upperFrom: Int?,
                          rowBlock: (Range<Int>) -> Void) {
    packedGram(SIMD8<Double>.self, a, aStride: aStride, rows: m, b, bStride: bStride, cols: n, depth: depth,
               into: c, ldc: ldc, workspace: workspace, blocking: blocking, upperFrom: upperFrom,
               rowBlock: rowBlock)
  }

  public static func gram(_ a: UnsafePointer<Float>, aStride: Int, rows m: Int,
                          _ b: UnsafePointer<Float>, bStride: Int, cols n: Int, depth: Int,
                          into c: UnsafeMutablePointer<Float>, ldc: Int,
                          workspace: UnsafeMutablePointer<Float>, blocking: GramBlocking, upperFrom: Int?,
                          rowBlock: (Range<Int>) -> Void) {
    packedGram(SIMD16<Float>.self, a, aStride: aStride, rows: m, b, bStride: bStride, cols: n, depth: depth,
               into: c, ldc: ldc, workspace: workspace, blocking: blocking, upperFrom: upperFrom,
               rowBlock: rowBlock)
  }
}

extension AVX512 {
  /// The recursion over a block of rows on 8-double vectors (see `RowRecursion`).
  public static func recurse(_ r: RowRecursion, _ block: Range<Int>, _ c: UnsafePointer<Double>, ldc: Int) {
    r.rows(SIMD8<Double>.self, block, c, ldc: ldc)
  }

  public static func recurse(_ r: RowRecursion, _ block: Range<Int>, _ c: UnsafePointer<Float>, ldc: Int) {
    r.rows(SIMD8<Double>.self, block, c, ldc: ldc)
  }
}

extension AVX512 {
  /// One column group (4, 8, 12 or 16 columns) of the solver's tile product on AVX-512.
  public static func tileProduct(_ shape: TileProductShape<Float>, columns: Int, diagonal: Bool) {
    shape.run(columns: columns, diagonal: diagonal)
  }

  public static func tileProduct(_ shape: TileProductShape<Double>, columns: Int, diagonal: Bool) {
    shape.run(columns: columns, diagonal: diagonal)
  }
}

extension AVX512 {
  /// An activation's pair map over a row of covariances on 8-double vectors (see `pairMapRow`).
  public static func pairMapRow(_ kind: PairMapKind, s: UnsafeMutablePointer<Double>, t: UnsafeMutablePointer<Double>, count n: Int,
                                qi: UnsafePointer<Double>, qiStride: Int, qj: UnsafePointer<Double>) {
    GramMicroKernels.pairMapRow(SIMD8<Double>.self, kind, s: s, t: t, count: n, qi: qi, qiStride: qiStride, qj: qj)
  }
}
