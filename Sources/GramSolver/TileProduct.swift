/// One tile's share of `y = K·x` for a symmetric K stored as upper tiles, in one sweep over the
/// tile's stored values (float32 or float64), accumulating in float64:
///
///     y[rows] += K_rc · x[cols]      and, unless the tile is diagonal,   y[cols] += K_rcᵀ · x[rows]
///
/// `x` and `y` are row-major `n × lanes·4` blocks (the C columns padded with zeros to whole
/// `SIMD4`s), so each stored value is widened once and used for both products, four columns per
/// fused multiply-add. Rows go four at a time, so each `y[col]` is read and written once per
/// four values of K. Memory traffic is one read of the tile.
@inlinable
public func symmetricTileProduct<T: BinaryFloatingPoint>(
  _ k: UnsafePointer<T>, rows m: Int, cols w: Int, rowStart: Int, colStart: Int, diagonal: Bool,
  x: UnsafePointer<SIMD4<Double>>, y: UnsafeMutablePointer<SIMD4<Double>>, lanes: Int
) {
  var acc = [SIMD4<Double>](repeating: SIMD4(), count: 4 * lanes)
  acc.withUnsafeMutableBufferPointer { a in
    var i = 0
    while i + 4 <= m {
      for q in 0..<(4 * lanes) { a[q] = SIMD4() }
      let r0 = k + i * w, r1 = r0 + w, r2 = r1 + w, r3 = r2 + w
      let x0 = x + (rowStart + i) * lanes, x1 = x0 + lanes, x2 = x1 + lanes, x3 = x2 + lanes
      for j in 0..<w {
        let k0 = SIMD4<Double>(repeating: Double(r0[j])), k1 = SIMD4<Double>(repeating: Double(r1[j]))
        let k2 = SIMD4<Double>(repeating: Double(r2[j])), k3 = SIMD4<Double>(repeating: Double(r3[j]))
        let xj = x + (colStart + j) * lanes
        for q in 0..<lanes {
          let v = xj[q]
          a[q].addProduct(k0, v)
          a[lanes + q].addProduct(k1, v)
          a[2 * lanes + q].addProduct(k2, v)
          a[3 * lanes + q].addProduct(k3, v)
        }
        if !diagonal {
          let yj = y + (colStart + j) * lanes
          for q in 0..<lanes {
            var s = yj[q]
            s.addProduct(k0, x0[q]); s.addProduct(k1, x1[q]); s.addProduct(k2, x2[q]); s.addProduct(k3, x3[q])
            yj[q] = s
          }
        }
      }
      for t in 0..<4 {
        let yi = y + (rowStart + i + t) * lanes
        for q in 0..<lanes { yi[q] += a[t * lanes + q] }
      }
      i += 4
    }
    while i < m {
      for q in 0..<lanes { a[q] = SIMD4() }
      let xi = x + (rowStart + i) * lanes
      let row = k + i * w
      for j in 0..<w {
        let kij = SIMD4<Double>(repeating: Double(row[j]))
        let xj = x + (colStart + j) * lanes
        for q in 0..<lanes { a[q].addProduct(kij, xj[q]) }
        if !diagonal {
          let yj = y + (colStart + j) * lanes
          for q in 0..<lanes { yj[q].addProduct(kij, xi[q]) }
        }
      }
      let yi = y + (rowStart + i) * lanes
      for q in 0..<lanes { yi[q] += a[q] }
      i += 1
    }
  }
}
