import CSIMDSupport
import GramMicroKernels
import GramMicroKernelsAVX512

#if canImport(Glibc)
import Glibc
#endif

/// Shapes of a packed Gram product, the same for every instruction set so that scratch sizes
/// do not depend on the CPU.
public enum GramShape {
  /// Rows of one block of results (`GramBlocking.mc`).
  public static let blockRows = 72
  /// Largest k block of any instruction set (`GramBlocking.kc`).
  static let maxKBlock = 256
  /// Columns are padded to a multiple of the widest register block (2 × 16 floats).
  public static func paddedCols(_ n: Int) -> Int { roundUp(max(n, 1), 32) }
  /// Scalars of packing workspace for `n` columns of `depth` features.
  public static func workspace(cols n: Int, depth: Int) -> Int { blockRows * maxKBlock + paddedCols(n) * depth }
}

/// `Σ_k a[i*aStride + k]·b[j*bStride + k]` on `isa`, one fused multiply-add chain over k per
/// entry, one block of `GramShape.blockRows` rows at a time into `c` (room for
/// `blockRows × GramShape.paddedCols(n)`), each block handed to `rowBlock` (see `packedGram`,
/// also for `upperFrom`).
@inline(__always)
func gram<T: BinaryFloatingPoint>(
  _ a: UnsafePointer<T>, aStride: Int, rows m: Int, _ b: UnsafePointer<T>, bStride: Int, cols n: Int,
  depth: Int, into c: UnsafeMutablePointer<T>, ldc: Int, workspace: UnsafeMutablePointer<T>,
  upperFrom: Int? = nil, isa: GramISA = .current, rowBlock: (Range<Int>) -> Void
) {
  precondition(ldc >= GramShape.paddedCols(n), "gram: ldc too small")
  var blocking = isa.blocking(scalarBytes: MemoryLayout<T>.size)
  blocking.mc = GramShape.blockRows
  precondition(blocking.kc <= GramShape.maxKBlock)
  if T.self == Double.self {
    let a = UnsafeRawPointer(a).assumingMemoryBound(to: Double.self)
    let b = UnsafeRawPointer(b).assumingMemoryBound(to: Double.self)
    let c = UnsafeMutableRawPointer(c).assumingMemoryBound(to: Double.self)
    let w = UnsafeMutableRawPointer(workspace).assumingMemoryBound(to: Double.self)
    switch isa {
    case .avx512:
      AVX512.gram(a, aStride: aStride, rows: m, b, bStride: bStride, cols: n, depth: depth,
                  into: c, ldc: ldc, workspace: w, blocking: blocking, upperFrom: upperFrom, rowBlock: rowBlock)
    case .avx2:
      packedGram(SIMD4<Double>.self, a, aStride: aStride, rows: m, b, bStride: bStride, cols: n, depth: depth,
                 into: c, ldc: ldc, workspace: w, blocking: blocking, upperFrom: upperFrom, rowBlock: rowBlock)
    }
  } else if T.self == Float.self {
    let a = UnsafeRawPointer(a).assumingMemoryBound(to: Float.self)
    let b = UnsafeRawPointer(b).assumingMemoryBound(to: Float.self)
    let c = UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self)
    let w = UnsafeMutableRawPointer(workspace).assumingMemoryBound(to: Float.self)
    switch isa {
    case .avx512:
      AVX512.gram(a, aStride: aStride, rows: m, b, bStride: bStride, cols: n, depth: depth,
                  into: c, ldc: ldc, workspace: w, blocking: blocking, upperFrom: upperFrom, rowBlock: rowBlock)
    case .avx2:
      packedGram(SIMD8<Float>.self, a, aStride: aStride, rows: m, b, bStride: bStride, cols: n, depth: depth,
                 into: c, ldc: ldc, workspace: w, blocking: blocking, upperFrom: upperFrom, rowBlock: rowBlock)
    }
  } else {
    preconditionFailure("gram: Float or Double only")
  }
}
