import GramMicroKernels
import GramMicroKernelsAVX512

/// One tile's share of `y = K·x` for a symmetric K stored as upper tiles, in one sweep over the
/// tile's stored values (float32 or float64), accumulating in float64:
///
///     y[rows] += K_rc · x[cols]      and, unless the tile is diagonal,   y[cols] += K_rcᵀ · x[rows]
///
/// `x` and `y` are row-major `n × lanes·4` blocks (the C columns padded with zeros to whole
/// `SIMD4`s), so each stored value is widened once and used for both products. Rows go four at
/// a time, so each `y[col]` is read and written once per four values of K, and the four rows'
/// accumulators stay in registers: the row width is a type (`SIMD4`, `SIMD8`, 12 or `SIMD16`
/// columns), wider blocks go in groups of 16 columns. Memory traffic is one read of the tile
/// per group (one for up to 16 right-hand sides). Rows of `k` are `ld` elements apart (default
/// `cols`: a packed tile; the matrix's width for a tile read in place).
@inlinable
public func symmetricTileProduct<T: BinaryFloatingPoint>(
  _ k: UnsafePointer<T>, rows m: Int, cols w: Int, rowStart: Int, colStart: Int, diagonal: Bool,
  x: UnsafePointer<SIMD4<Double>>, y: UnsafeMutablePointer<SIMD4<Double>>, lanes: Int, ld: Int? = nil,
  isa: GramISA = .current
) {
  let wide = isa == .avx512
  let xs = UnsafeRawPointer(x).assumingMemoryBound(to: Double.self)
  let ys = UnsafeMutableRawPointer(y).assumingMemoryBound(to: Double.self)
  let stride = 4 * lanes
  var c0 = 0
  while c0 < stride {
    let g = min(16, stride - c0)
    let shape = TileProductShape(k: k, rows: m, cols: w, rowStart: rowStart, colStart: colStart, x: xs + c0, y: ys + c0,
                                 stride: stride, ld: ld)
    if wide && (T.self == Float.self || T.self == Double.self) {
      if T.self == Float.self {
        AVX512.tileProduct(shape.retyped(Float.self), columns: g, diagonal: diagonal)
      } else {
        AVX512.tileProduct(shape.retyped(Double.self), columns: g, diagonal: diagonal)
      }
      c0 += g
      continue
    }
    shape.run(columns: g, diagonal: diagonal)
    c0 += g
  }
}

