/// Dot products of every row of a block of `a` with every row of a block of `b`.
///
/// `out[i*ldOut + j] = Σ_k a[i*aStride + k]·b[j*bStride + k]` for `k < depth`, where `depth`
/// is a multiple of `Lanes.scalarCount` (callers pad rows with zeros). Register-blocked 2×4
/// with one `Lanes` accumulator per pair; every pair, in the blocked body or in a ragged
/// edge, accumulates in exactly the same order (fused multiply-add over lane chunks, then one
/// `sum()`), so an entry never depends on where it sits in a tile.
@inlinable
func gramBlock(_ a: UnsafePointer<Double>, aStride: Int, rows m: Int,
               _ b: UnsafePointer<Double>, bStride: Int, cols n: Int,
               depth: Int, into out: UnsafeMutablePointer<Double>, ldOut: Int) {
  let w = Lanes.scalarCount
  @inline(__always) func load(_ p: UnsafePointer<Double>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
  }
  var i = 0
  while i + 2 <= m {
    let a0 = a + i * aStride, a1 = a0 + aStride
    var j = 0
    while j + 4 <= n {
      let b0 = b + j * bStride, b1 = b0 + bStride, b2 = b1 + bStride, b3 = b2 + bStride
      var c00 = Lanes(), c01 = Lanes(), c02 = Lanes(), c03 = Lanes()
      var c10 = Lanes(), c11 = Lanes(), c12 = Lanes(), c13 = Lanes()
      var k = 0
      while k < depth {
        let x0 = load(a0 + k), x1 = load(a1 + k)
        let y0 = load(b0 + k), y1 = load(b1 + k), y2 = load(b2 + k), y3 = load(b3 + k)
        c00.addProduct(x0, y0); c01.addProduct(x0, y1); c02.addProduct(x0, y2); c03.addProduct(x0, y3)
        c10.addProduct(x1, y0); c11.addProduct(x1, y1); c12.addProduct(x1, y2); c13.addProduct(x1, y3)
        k += w
      }
      let o0 = out + i * ldOut + j, o1 = o0 + ldOut
      o0[0] = c00.sum(); o0[1] = c01.sum(); o0[2] = c02.sum(); o0[3] = c03.sum()
      o1[0] = c10.sum(); o1[1] = c11.sum(); o1[2] = c12.sum(); o1[3] = c13.sum()
      j += 4
    }
    while j < n {
      out[i * ldOut + j] = dot(a0, b + j * bStride, depth: depth)
      out[(i + 1) * ldOut + j] = dot(a1, b + j * bStride, depth: depth)
      j += 1
    }
    i += 2
  }
  while i < m {
    for j in 0..<n { out[i * ldOut + j] = dot(a + i * aStride, b + j * bStride, depth: depth) }
    i += 1
  }
}

/// One dot product in the same accumulation order as `gramBlock`'s blocked body.
@inlinable @inline(__always)
func dot(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, depth: Int) -> Double {
  var c = Lanes()
  var k = 0
  while k < depth {
    c.addProduct(UnsafeRawPointer(x + k).loadUnaligned(as: Lanes.self),
                 UnsafeRawPointer(y + k).loadUnaligned(as: Lanes.self))
    k += Lanes.scalarCount
  }
  return c.sum()
}
