// The dot-product part of a Gram tile, BLIS-style: both operands packed into panels, a 6 × 2w
// register block of fused multiply-adds (w = lanes of `V`), cache blocking over rows and over
// the feature dimension, and each block of rows handed to the caller while it is in cache.
//
// The summation order is the one thing that may not change: entry (i, j) is always the chain
// c ← fma(a[i,k], b[j,k], c) over k = 0, 1, …, depth − 1 starting from c = 0, whatever the
// vector width, register block, cache block or position in the tile. A k block ends by storing
// c and the next one reloads it, which rounds nothing. So every instantiation (AVX2, AVX-512,
// the scalar `sequentialDot`) gives the same bits, and so does any tiling of the matrix.
//
// Everything here is `@inlinable` and generic: a client module instantiates it with its own
// vector type and compiles it with its own instruction set (see `GramMicroKernelsAVX512`).

/// Rows of the register block.
public let microRows = 6

/// Cache blocking of the packed product.
public struct GramBlocking: Sendable {
  /// Feature-dimension block: a micro-panel of B (`kc × 2w`) stays in L1.
  public var kc: Int
  /// Row block: a packed block of A (`mc × kc`) and the block of results (`mc` rows) stay in
  /// L2 across the k blocks. A multiple of `microRows`.
  public var mc: Int

  public init(kc: Int, mc: Int) {
    precondition(kc > 0 && mc > 0 && mc % microRows == 0, "GramBlocking: kc > 0, mc a multiple of \(microRows)")
    self.kc = kc
    self.mc = mc
  }

  /// Blocks for a vector of `lanes` scalars of `scalarBytes` bytes: a 16 KiB micro-panel of B.
  public static func forVector(lanes: Int, scalarBytes: Int) -> GramBlocking {
    GramBlocking(kc: max(64, 16384 / (2 * lanes * scalarBytes)), mc: 72)
  }
}

/// `x` rounded up to a multiple of `m`.
@inlinable
public func roundUp(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }

/// Scalars of workspace `packedGram` needs for `cols` columns of `depth` features.
@inlinable
public func packedGramWorkspace(cols: Int, depth: Int, lanes: Int, blocking: GramBlocking) -> Int {
  blocking.mc * blocking.kc + roundUp(max(cols, 1), 2 * lanes) * depth
}

/// The scalar form of one entry: the chain `packedGram` computes, one fused multiply-add at a time.
@inlinable
public func sequentialDot<T: FloatingPoint>(_ x: UnsafePointer<T>, _ y: UnsafePointer<T>, depth: Int) -> T {
  var c = T.zero
  for k in 0..<depth { c = c.addingProduct(x[k], y[k]) }
  return c
}

/// `Σ_k a[i*aStride + k]·b[j*bStride + k]` for `i < m`, `j < n`, `k < depth`, one block of
/// `blocking.mc` rows at a time: row `i` of the block starting at `i0` lands in
/// `c[(i − i0)*ldc + j]`, then `rowBlock(i0 ..< i0 + rows)` is called (while the block is
/// still in cache) before the next block overwrites `c`.
///
/// `c` must have room for `blocking.mc` rows of `roundUp(n, 2·lanes)` columns (`ldc` at least
/// that); padding columns are written with zeros. `workspace` holds
/// `packedGramWorkspace(cols: n, depth: depth, …)` scalars: B is packed once, whole.
///
/// `upperFrom = r` (for `a == b`, a diagonal block) skips the register blocks that lie wholly
/// left of column `i − r` in every one of their rows `i`: those entries of `c` are left as they
/// were. Entries with `j ≥ i − r` are always computed.
@inlinable
public func packedGram<V: SIMD>(
  _: V.Type, _ a: UnsafePointer<V.Scalar>, aStride: Int, rows m: Int,
  _ b: UnsafePointer<V.Scalar>, bStride: Int, cols n: Int, depth: Int,
  into c: UnsafeMutablePointer<V.Scalar>, ldc: Int,
  workspace: UnsafeMutablePointer<V.Scalar>, blocking: GramBlocking, upperFrom: Int? = nil,
  rowBlock: (Range<Int>) -> Void
) where V.Scalar: BinaryFloatingPoint {
  let nr = 2 * V.scalarCount, mr = microRows
  let np = roundUp(max(n, 1), nr)
  precondition(ldc >= np, "packedGram: ldc \(ldc) < padded columns \(np)")
  let aPack = workspace, bPack = workspace + blocking.mc * blocking.kc
  // B, once: k block after k block, each as column panels (k-major inside a panel).
  var k0 = 0
  while k0 < depth {
    let kc = min(blocking.kc, depth - k0)
    packPanels(b + k0, stride: bStride, count: n, panel: nr, depth: kc, into: bPack + k0 * np)
    k0 += kc
  }
  var i0 = 0
  while i0 < m {
    let rows = min(blocking.mc, m - i0), panels = (rows + mr - 1) / mr
    if depth == 0 {
      for i in 0..<(panels * mr) { for j in 0..<np { c[i * ldc + j] = 0 } }
    }
    k0 = 0
    while k0 < depth {
      let kc = min(blocking.kc, depth - k0)
      packPanels(a + i0 * aStride + k0, stride: aStride, count: rows, panel: mr, depth: kc, into: aPack)
      let bBlock = bPack + k0 * np
      for jp in 0..<(np / nr) {
        let bp = UnsafePointer(bBlock + jp * nr * kc)
        for ip in 0..<panels {
          if let r = upperFrom, jp * nr + nr - 1 < i0 + ip * mr - r { continue }
          microKernel(V.self, UnsafePointer(aPack + ip * mr * kc), bp, depth: kc,
                      c + ip * mr * ldc + jp * nr, ldc: ldc, accumulate: k0 > 0)
        }
      }
      k0 += kc
    }
    rowBlock(i0 ..< i0 + rows)
    i0 += rows
  }
}

/// Packs `count` rows (`stride` apart, `depth` values each) into panels of `panel` rows,
/// each panel k-major: `out[p*panel*depth + k*panel + r] = src[(p*panel + r)*stride + k]`,
/// zero past `count`.
@inlinable @inline(__always)
func packPanels<T: BinaryFloatingPoint>(_ src: UnsafePointer<T>, stride: Int, count: Int, panel: Int, depth: Int,
                                        into out: UnsafeMutablePointer<T>) {
  let panels = (count + panel - 1) / panel
  for p in 0..<panels {
    let dst = out + p * panel * depth
    for r in 0..<panel {
      let row = p * panel + r
      if row < count {
        let s = src + row * stride
        for k in 0..<depth { dst[k * panel + r] = s[k] }
      } else {
        for k in 0..<depth { dst[k * panel + r] = 0 }
      }
    }
  }
}

/// One 6 × 2w block of `c` over one k block: broadcast a[i,k], two vector loads of b[·,k].
@inlinable @inline(__always)
func microKernel<V: SIMD>(_: V.Type, _ a: UnsafePointer<V.Scalar>, _ b: UnsafePointer<V.Scalar>, depth: Int,
                          _ c: UnsafeMutablePointer<V.Scalar>, ldc: Int, accumulate: Bool)
where V.Scalar: BinaryFloatingPoint {
  let w = V.scalarCount, nr = 2 * w
  @inline(__always) func load(_ p: UnsafePointer<V.Scalar>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
  @inline(__always) func load(_ p: UnsafeMutablePointer<V.Scalar>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
  @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<V.Scalar>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
  }
  let c0 = c, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc
  var r00 = V(), r01 = V(), r10 = V(), r11 = V(), r20 = V(), r21 = V()
  var r30 = V(), r31 = V(), r40 = V(), r41 = V(), r50 = V(), r51 = V()
  if accumulate {
    r00 = load(c0); r01 = load(c0 + w); r10 = load(c1); r11 = load(c1 + w)
    r20 = load(c2); r21 = load(c2 + w); r30 = load(c3); r31 = load(c3 + w)
    r40 = load(c4); r41 = load(c4 + w); r50 = load(c5); r51 = load(c5 + w)
  }
  var ap = a, bp = b
  for _ in 0..<depth {
    let b0 = load(bp), b1 = load(bp + w)
    var x = V(repeating: ap[0]); r00.addProduct(x, b0); r01.addProduct(x, b1)
    x = V(repeating: ap[1]); r10.addProduct(x, b0); r11.addProduct(x, b1)
    x = V(repeating: ap[2]); r20.addProduct(x, b0); r21.addProduct(x, b1)
    x = V(repeating: ap[3]); r30.addProduct(x, b0); r31.addProduct(x, b1)
    x = V(repeating: ap[4]); r40.addProduct(x, b0); r41.addProduct(x, b1)
    x = V(repeating: ap[5]); r50.addProduct(x, b0); r51.addProduct(x, b1)
    ap += microRows
    bp += nr
  }
  store(r00, c0); store(r01, c0 + w); store(r10, c1); store(r11, c1 + w)
  store(r20, c2); store(r21, c2 + w); store(r30, c3); store(r31, c3 + w)
  store(r40, c4); store(r41, c4 + w); store(r50, c5); store(r51, c5 + w)
}
