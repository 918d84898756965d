import GramMicroKernels
import GramNetwork

// MARK: - The pooled path by pixel offset ("slices")
//
// With shared weights a convolution couples the pixel pairs (p + d, p′ + d) only: for a fixed
// relative offset q = p′ − p the covariances Σ(p, p + q) and Θ(p, p + q) form one H×W array
// (a *slice*), every convolution maps the slice of offset q·s (s its stride) to the slice of
// offset q, and every activation maps a slice on its own (with the variance maps of both
// images). Only pooling mixes offsets. So the layers between two poolings (a *stage*) run one
// offset at a time on arrays of at most H·W values that stay in L1, never on the (H·W)²
// pixel-pair array; a pooling accumulates each finished slice into its (much smaller) output
// array, and a global average pool sums it. A flatten readout needs the offset 0 only.
//
// Every entry is a fixed sequence of operations on its two images whatever the tiling, the
// rank count or the CPU (one vector width for every instruction set), so the bits are the same
// everywhere. Circular padding (whose offsets wrap) takes the full path in `Convolutional`.

/// Where a slice lies in its buffer: `rows × cols` values, pixel (0, 0) at `(originRow, originCol)`;
/// the margin holds zeros (or the taps that see padding read zeros).
struct SliceLayout: Sendable, Equatable {
  var rows: Int
  var cols: Int
  var originRow: Int
  var originCol: Int
  var count: Int { rows * cols }

  /// The grid itself, no margin.
  init(grid: (h: Int, w: Int)) {
    rows = grid.h; cols = grid.w; originRow = 0; originCol = 0
  }

  /// The input of a window over `grid`: every position its live taps read, for every output.
  init(readBy h: Convolutional.Axis, _ w: Convolutional.Axis) {
    func span(_ a: Convolutional.Axis) -> (Int, Int) {
      let lo = min(0, a.live.lowerBound - a.padLow)
      let hi = max(a.input - 1, (a.output - 1) * a.stride + a.live.upperBound - 1 - a.padLow)
      return (hi - lo + 1, -lo)
    }
    (rows, originRow) = span(h)
    (cols, originCol) = span(w)
  }
}

/// The offsets `q` of one axis for which `0 ≤ p < n` and `0 ≤ p + q < n` for some p.
@inline(__always) func validRange(_ q: Int, _ n: Int) -> Range<Int> { max(0, -q) ..< max(max(0, -q), min(n, n - q)) }

struct SlicePlan: Sendable {
  struct Conv: Sendable {
    let h: Convolutional.Axis
    let w: Convolutional.Axis
    let layer: DenseLayer
    let inverseTaps: Double
    let map: ActivationMap?
    let record: Int
    let input: SliceLayout
    /// The layout its output is written in (the next conv's input, or the grid).
    let output: SliceLayout
    /// The stride product of the convolutions after it in its stage: stage offset Q is this
    /// conv's output offset `Q·after`.
    let after: (h: Int, w: Int)
  }

  /// Accumulates a stage's slices into the pooled array: input index `i` of an axis is read by
  /// outputs `targets[i]` (every live tap; several for overlapping windows).
  struct Pool: Sendable {
    let grid: (h: Int, w: Int)
    let targetsH: [[Int]]
    let targetsW: [[Int]]
    let divisors: [Double]
  }

  enum Sink: Sendable {
    case pool(Pool)
    case globalAvgPool
    case flatten
  }

  struct Stage: Sendable {
    let grid: (h: Int, w: Int)
    /// An activation right after the stage's input (a pooling then an activation).
    let gatherMap: ActivationMap?
    let gatherRecord: Int
    let gatherLayout: SliceLayout
    let convs: [Conv]
    let outGrid: (h: Int, w: Int)
    /// Stage output offset Q reads the stage input's offset `Q·scale`.
    let scale: (h: Int, w: Int)
    /// The output offsets computed, per axis (0 among them); visited 0 first.
    let offsetsH: [Int]
    let offsetsW: [Int]
    let sink: Sink
    /// The final slice's layout (the grid, no margin).
    var final: SliceLayout { convs.last?.output ?? gatherLayout }
  }

  let stages: [Stage]
  let channels: Int
  /// Doubles of one pooled array (Σ or Θ) at its largest, and of one slice buffer.
  let pooledCells: Int
  let sliceCells: Int

  /// Doubles of scratch per thread: two pooled pairs (a stage's input and output), two slice
  /// pairs (ping-pong), and a vector of slack after each slice.
  var scratchCount: Int { 4 * pooledCells + 4 * (sliceCells + 16) }

  /// nil when some window is circular (its offsets wrap: the full path computes it). Throws
  /// when a pooled array cannot be held.
  init?(_ conv: Convolutional) throws {
    for op in conv.spatial {
      switch op {
      case .conv(let h, let w, _), .pool(let h, let w, _): if h.circular || w.circular { return nil }
      case .activation: break
      }
    }
    for case .pool(let h, let w, _) in conv.spatial {
      let (cells, o1) = h.output.multipliedReportingOverflow(by: w.output)
      let (square, o2) = cells.multipliedReportingOverflow(by: cells)
      guard !o1, !o2, square <= 1 << 28 else {
        throw NetworkError(position: nil, "a pooling to \(h.output)×\(w.output) needs its full pixel-pair covariances (\(o1 || o2 ? "more than 2^63" : String(square)) values per pair, four buffers of 8 bytes each, per thread): too large; pool to a smaller grid, or use smaller images")
      }
    }
    channels = conv.inputShape[2]
    // Split the spatial ops into stages at each pooling.
    struct Raw {
      var grid: (h: Int, w: Int)
      var gatherMap: ActivationMap? = nil
      var gatherRecord = 0
      var convs: [(Convolutional.Axis, Convolutional.Axis, Convolutional.Weights, ActivationMap?, Int, (h: Int, w: Int))] = []
      var outGrid: (h: Int, w: Int)
      var pool: (Convolutional.Axis, Convolutional.Axis, [Double])? = nil
    }
    var raws: [Raw] = [Raw(grid: conv.grids[0], outGrid: conv.grids[0])]
    for (k, op) in conv.spatial.enumerated() {
      let out = conv.grids[k + 1]
      switch op {
      case .conv(let h, let w, let weights):
        raws[raws.count - 1].convs.append((h, w, weights, nil, 0, out))
        raws[raws.count - 1].outGrid = out
      case .activation(let map, let record):
        if raws[raws.count - 1].convs.isEmpty {
          raws[raws.count - 1].gatherMap = map
          raws[raws.count - 1].gatherRecord = record
        } else {
          raws[raws.count - 1].convs[raws[raws.count - 1].convs.count - 1].3 = map
          raws[raws.count - 1].convs[raws[raws.count - 1].convs.count - 1].4 = record
        }
      case .pool(let h, let w, let divisors):
        raws[raws.count - 1].pool = (h, w, divisors)
        raws.append(Raw(grid: out, outGrid: out))
      }
    }
    // The offsets each stage must deliver, from the readout backwards.
    let last = raws[raws.count - 1].outGrid
    var needH: [Int], needW: [Int]
    switch conv.collapse {
    case .flatten: (needH, needW) = ([0], [0])
    case .globalAvgPool: (needH, needW) = (Array(-(last.h - 1) ... (last.h - 1)), Array(-(last.w - 1) ... (last.w - 1)))
    }
    var offsets = [([Int], [Int])](repeating: ([], []), count: raws.count)
    for k in stride(from: raws.count - 1, through: 0, by: -1) {
      offsets[k] = (needH, needW)
      let sh = raws[k].convs.reduce(1) { $0 * $1.0.stride }, sw = raws[k].convs.reduce(1) { $0 * $1.1.stride }
      // The stage input's offsets, then what the pooling before it needs of its input.
      let inH = needH.map { $0 * sh }, inW = needW.map { $0 * sw }
      guard k > 0, let (ph, pw, _) = raws[k - 1].pool else { break }
      func through(_ need: [Int], _ a: Convolutional.Axis) -> [Int] {
        var set = Set<Int>()
        for q in need { for t in a.live { for t2 in a.live { set.insert(q * a.stride + t2 - t) } } }
        return set.filter { abs($0) < a.input }.sorted()
      }
      needH = through(inH, ph)
      needW = through(inW, pw)
    }
    // Layouts and the stages.
    var stages: [Stage] = []
    var pooled = 1, slice = 1
    for (k, raw) in raws.enumerated() {
      var convs: [Conv] = []
      var layouts: [SliceLayout] = raw.convs.map { SliceLayout(readBy: $0.0, $0.1) } + [SliceLayout(grid: raw.outGrid)]
      // A last convolution that keeps its grid writes in its input's layout: every buffer of a
      // stride-1 stage then has one layout, and a buffer's zeros outlive the offset that wrote them.
      if let c = raw.convs.last, c.0.input == c.0.output, c.1.input == c.1.output { layouts[layouts.count - 1] = layouts[layouts.count - 2] }
      var after = (h: 1, w: 1)
      var built: [Conv] = []
      for (i, c) in raw.convs.enumerated().reversed() {
        let (h, w, weights, map, record, _) = c
        built.append(Conv(h: h, w: w,
                          layer: DenseLayer(weightVariance: weights.w2, biasVariance: weights.b2, standardFanIn: weights.fanIn,
                                            standardBiasTerm: weights.biasTerm),
                          inverseTaps: 1 / Double(h.window * w.window), map: map, record: record,
                          input: layouts[i], output: layouts[i + 1], after: after))
        after = (after.h * h.stride, after.w * w.stride)
      }
      convs = built.reversed()
      for l in layouts { slice = max(slice, l.count) }
      let sink: Sink
      if let (h, w, divisors) = raw.pool {
        func targets(_ a: Convolutional.Axis) -> [[Int]] {
          var t = [[Int]](repeating: [], count: a.input)
          for o in 0..<a.output { for tap in a.live { let i = a.source(o, tap); if i >= 0 { t[i].append(o) } } }
          return t
        }
        let grid = (h: h.output, w: w.output)
        sink = .pool(Pool(grid: grid, targetsH: targets(h), targetsW: targets(w), divisors: divisors))
        pooled = max(pooled, grid.h * grid.w * grid.h * grid.w)
      } else {
        sink = conv.collapse == .flatten ? .flatten : .globalAvgPool
      }
      var (oh, ow) = offsets[k]
      precondition(oh.contains(0) && ow.contains(0), "SlicePlan: the offset 0 must be computed")
      oh = [0] + oh.filter { $0 != 0 }
      ow = [0] + ow.filter { $0 != 0 }
      stages.append(Stage(grid: raw.grid, gatherMap: raw.gatherMap, gatherRecord: raw.gatherRecord, gatherLayout: layouts[0],
                          convs: convs, outGrid: raw.outGrid, scale: after, offsetsH: oh, offsetsW: ow, sink: sink))
    }
    self.stages = stages
    pooledCells = pooled
    sliceCells = slice
  }
}

// MARK: - Running a pair

/// The arithmetic of a stage's slices: float64 (`SIMD4<Double>`) or float32 (`SIMD8<Float>`);
/// records, pooled arrays, sums and the readout are float64 in both.
typealias Slices64 = SIMD4<Double>
typealias Slices32 = SIMD8<Float>

/// A pair's buffers: Σ and Θ of one slice.
typealias SlicePair<S> = (UnsafeMutablePointer<S>, UnsafeMutablePointer<S>)

/// The variance records of the pair, in float64 and rounded to float32.
struct PairRecords {
  let qx: UnsafeMutablePointer<Double>
  let qy: UnsafePointer<Double>
  /// nil for a self-pair (always float64).
  let qx32: UnsafePointer<Float>?
  let qy32: UnsafePointer<Float>?

  /// Stands for the records of a network without activations (never read).
  static var none: UnsafePointer<Float> { UnsafePointer(bitPattern: MemoryLayout<Float>.alignment)! }

  @inline(__always) func x<S: LaneScalar>(_: S.Type) -> UnsafePointer<S> {
    S.self == Double.self ? UnsafeRawPointer(qx).assumingMemoryBound(to: S.self) : UnsafeRawPointer(qx32 ?? PairRecords.none).assumingMemoryBound(to: S.self)
  }
  @inline(__always) func y<S: LaneScalar>(_: S.Type) -> UnsafePointer<S> {
    S.self == Double.self ? UnsafeRawPointer(qy).assumingMemoryBound(to: S.self) : UnsafeRawPointer(qy32 ?? PairRecords.none).assumingMemoryBound(to: S.self)
  }
}

extension SlicePlan {
  /// The readout `(Σ, Θ)` of the pair `(x, y)` before the tail layers, in `scratch`
  /// (`scratchCount` doubles). `float32[k]`: stage k computes in float32. With `same` (x is y,
  /// always float64) the offset 0 records the variance maps into `qx` as it meets them and
  /// takes the exact θ = 0 forms.
  func run(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, records r: PairRecords, same: Bool,
           float32: [Bool], scratch: UnsafeMutablePointer<Double>) -> (Double, Double) {
    var pin = (scratch, scratch + pooledCells)
    var pout = (scratch + 2 * pooledCells, scratch + 3 * pooledCells)
    let slices = UnsafeMutableRawPointer(scratch + 4 * pooledCells)
    var sum = (0.0, 0.0)
    for (k, stage) in stages.enumerated() {
      if case .pool(let pool) = stage.sink {
        let n = pool.grid.h * pool.grid.w * pool.grid.h * pool.grid.w
        pout.0.update(repeating: 0, count: n)
        pout.1.update(repeating: 0, count: n)
      }
      if float32[k] && !same {
        runStage(Slices32.self, k, stage, x, y, r, same: false, slices: slices, pin: pin, pout: pout, sum: &sum)
      } else {
        runStage(Slices64.self, k, stage, x, y, r, same: same, slices: slices, pin: pin, pout: pout, sum: &sum)
      }
      if case .pool(let pool) = stage.sink {
        let po = pool.grid.h * pool.grid.w
        pool.divisors.withUnsafeBufferPointer { cp in
          for i in 0..<po {
            let rS = pout.0 + i * po, rT = pout.1 + i * po, ci = cp[i]
            for j in 0..<po { let d = 1 / (ci * cp[j]); rS[j] *= d; rT[j] *= d }
          }
        }
        swap(&pin, &pout)
      }
    }
    let g = stages[stages.count - 1].outGrid
    let p = Double(g.h * g.w)
    switch stages[stages.count - 1].sink {
    case .flatten: return (sum.0 / p, sum.1 / p)
    default: return (sum.0 / (p * p), sum.1 / (p * p))
    }
  }

  /// Every offset of one stage, in the lanes of `V`.
  @inline(__always)
  func runStage<V: LaneVector>(_: V.Type, _ k: Int, _ stage: Stage, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>,
                               _ r: PairRecords, same: Bool, slices: UnsafeMutableRawPointer,
                               pin: SlicePair<Double>, pout: SlicePair<Double>, sum: inout (Double, Double)) where V.Scalar: LaneScalar {
    typealias S = V.Scalar
    let stride = sliceCells + 16
    let base = slices.bindMemory(to: S.self, capacity: 4 * stride)
    let buffers = [(base, base + stride), (base + 2 * stride, base + 3 * stride)]
    var written = [WrittenRect(), WrittenRect()]
    let qx = r.x(S.self), qy = same ? qx : r.y(S.self)
    let record = same ? r.qx : nil
    for qh in stage.offsetsH {
      for qw in stage.offsetsW {
        // The stage input's slice.
        let gh = qh * stage.scale.h, gw = qw * stage.scale.w
        let zero = qh == 0 && qw == 0
        var a = 0
        var bufA = buffers[0]
        if k == 0 {
          gatherImages(x, y, stage, gh, gw, into: bufA, &written[0])
        } else {
          gatherPooled(pin, stage, gh, gw, into: bufA, &written[0])
        }
        if let map = stage.gatherMap {
          let g = stage.grid, l = stage.gatherLayout
          for oh in validRange(gh, g.h) {
            let o = (oh + l.originRow) * l.cols + l.originCol
            let at = stage.gatherRecord + oh * g.w
            Self.mapSegment(V.self, map, bufA.0 + o, bufA.1 + o, validRange(gw, g.w), qi: qx + at,
                            qj: qy + stage.gatherRecord + (oh + gh) * g.w + gw, record: zero ? record.map { $0 + at } : nil)
          }
        }
        var tZero = k == 0
        for c in stage.convs {
          convolve(V.self, c, from: bufA, into: buffers[1 - a], qh * c.after.h, qw * c.after.w, qx, qy,
                   record: zero ? record : nil, thetaIsZero: tZero, &written[1 - a])
          tZero = false
          a = 1 - a
          bufA = buffers[a]
        }
        // The finished slice (the stage's output grid, in the final layout) into the sink.
        let g = stage.outGrid, l = stage.final
        let rows = validRange(qh, g.h), cols = validRange(qw, g.w)
        let origin = l.originRow * l.cols + l.originCol
        let fin = (bufA.0 + origin, bufA.1 + origin)
        switch stage.sink {
        case .globalAvgPool:
          let (s, t) = Self.total(V.self, fin, rows: rows, cols: cols, ld: l.cols)
          sum.0 += s
          sum.1 += t
        case .flatten:
          // Offset 0 only: the mean of the same-position covariances.
          for ph in 0..<g.h {
            for pw in 0..<g.w { sum.0 += Double(fin.0[ph * l.cols + pw]); sum.1 += Double(fin.1[ph * l.cols + pw]) }
          }
        case .pool(let pool):
          Self.accumulate(fin, rows: rows, cols: cols, ld: l.cols, qh, qw, pool, into: pout)
        }
      }
    }
  }

  /// Stage 0's slice of offset (qh, qw): `Σ(p, p + q) = x_p·y_{p+q} / C` (float64, then
  /// rounded to the stage's type), `Θ = 0`, zeros outside.
  @inline(__always)
  func gatherImages<S: LaneScalar>(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, _ stage: Stage, _ qh: Int, _ qw: Int,
                                   into buf: SlicePair<S>, _ written: inout WrittenRect) {
    let l = stage.gatherLayout, g = stage.grid, c = channels, cd = Double(c)
    let rows = validRange(qh, g.h), cols = validRange(qw, g.w)
    Self.clearStale(buf, l, rows: rows, cols: cols, &written)
    if c == 1 {
      // One channel: a row of products, contiguous in both images (vectorised).
      for ph in rows {
        let d = buf.0 + (ph + l.originRow) * l.cols + l.originCol
        let dT = buf.1 + (ph + l.originRow) * l.cols + l.originCol
        let xr = x + ph * g.w, yr = y + (ph + qh) * g.w + qw
        for pw in cols { d[pw] = S(0.0 + xr[pw] * yr[pw]) }  // 0 + folds a −0 product, as the channel sum does
        for pw in cols { dT[pw] = 0 }
      }
      return
    }
    for ph in rows {
      let d = buf.0 + (ph + l.originRow) * l.cols + l.originCol
      let dT = buf.1 + (ph + l.originRow) * l.cols + l.originCol
      for pw in cols {
        let xi = x + (ph * g.w + pw) * c, yj = y + ((ph + qh) * g.w + pw + qw) * c
        var acc = 0.0
        for k in 0..<c { acc += xi[k] * yj[k] }
        d[pw] = S(c == 1 ? acc : acc / cd)
        dT[pw] = 0
      }
    }
  }

  /// A later stage's slice from the pooled array of its input grid: `Σ(p, p + q)`, `Θ(p, p + q)`.
  @inline(__always)
  func gatherPooled<S: LaneScalar>(_ p: SlicePair<Double>, _ stage: Stage, _ qh: Int, _ qw: Int, into buf: SlicePair<S>,
                                   _ written: inout WrittenRect) {
    let l = stage.gatherLayout, g = stage.grid, n = g.h * g.w
    let rows = validRange(qh, g.h), cols = validRange(qw, g.w)
    Self.clearStale(buf, l, rows: rows, cols: cols, &written)
    for ph in rows {
      let o = (ph + l.originRow) * l.cols + l.originCol
      for pw in cols {
        let i = ph * g.w + pw, j = (ph + qh) * g.w + pw + qw
        buf.0[o + pw] = S(p.0[i * n + j])
        buf.1[o + pw] = S(p.1[i * n + j])
      }
    }
  }

  /// The activation on `cols` of one row in place: `s[c]`, `t[c]` with variances `qi[c]` (this
  /// image) and `qj[c]` (the other, already shifted by the offset). `record` (a self-pair's
  /// offset 0, float64) stores the variances first and takes the exact θ = 0 forms.
  @inline(__always)
  static func mapSegment<V: LaneVector>(_: V.Type, _ map: ActivationMap, _ s: UnsafeMutablePointer<V.Scalar>,
                                        _ t: UnsafeMutablePointer<V.Scalar>, _ cols: Range<Int>,
                                        qi: UnsafePointer<V.Scalar>, qj: UnsafePointer<V.Scalar>,
                                        record: UnsafeMutablePointer<Double>?) where V.Scalar: LaneScalar {
    if let record {
      for c in cols {
        let v = Double(s[c])
        record[c] = v
        let (sa, dot) = map.diagonal(v)
        s[c] = V.Scalar(sa)
        t[c] *= V.Scalar(dot)
      }
      return
    }
    switch map.kind {
    case .abReLU:
      let m = ABReLUPair(angular: map.angular, even: map.even)
      segment(V.self, s, t, cols, qi, qj) { m.pair($0, lanes: $1, $2) }
    case .erf: segment(V.self, s, t, cols, qi, qj) { ErfPair().pair($0, lanes: $1, $2) }
    case .identity: return
    }
  }

  /// `map` over `cols` in place, two vectors a step (independent chains for the divider and
  /// square-root units), then one; the last partial vector goes lane by lane through one
  /// vector whose other lanes repeat the row's first value (the same operations per lane).
  @inline(__always)
  static func segment<V: LaneVector>(_: V.Type, _ s: UnsafeMutablePointer<V.Scalar>, _ t: UnsafeMutablePointer<V.Scalar>, _ cols: Range<Int>,
                                     _ qi: UnsafePointer<V.Scalar>, _ qj: UnsafePointer<V.Scalar>, _ map: (V, V, V) -> (V, V)) {
    let w = V.scalarCount
    guard !cols.isEmpty else { return }
    @inline(__always) func load(_ p: UnsafePointer<V.Scalar>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<V.Scalar>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
    var c = cols.lowerBound
    while c + 2 * w <= cols.upperBound {
      let (sa, dot) = map(load(s + c), load(qi + c), load(qj + c))
      let (sb, dotb) = map(load(s + c + w), load(qi + c + w), load(qj + c + w))
      let tn = load(t + c) * dot, tb = load(t + c + w) * dotb
      store(sa, s + c)
      store(tn, t + c)
      store(sb, s + c + w)
      store(tb, t + c + w)
      c += 2 * w
    }
    while c + w <= cols.upperBound {
      let (sa, dot) = map(load(s + c), load(qi + c), load(qj + c))
      let tn = load(t + c) * dot
      store(sa, s + c)
      store(tn, t + c)
      c += w
    }
    if c < cols.upperBound {
      let rest = c ..< cols.upperBound
      var sv = V(repeating: s[c]), tv = V(repeating: t[c]), qv = V(repeating: qi[c]), qjv = V(repeating: qj[c])
      for (l, k) in rest.enumerated() { sv[l] = s[k]; tv[l] = t[k]; qv[l] = qi[k]; qjv[l] = qj[k] }
      let (sa, dot) = map(sv, qv, qjv)
      let tn = tv * dot
      for (l, k) in rest.enumerated() { s[k] = sa[l]; t[k] = tn[l] }
    }
  }
}

extension SlicePlan {
  /// One convolution (and its activation) on the slice of output offset (qh, qw): every
  /// position of the output layout written, zeros outside the valid rectangle. Per output row,
  /// the taps and the weights a vector at a time, then the activation over the row.
  @inline(__always)
  func convolve<V: LaneVector>(_: V.Type, _ c: Conv, from src: SlicePair<V.Scalar>, into dst: SlicePair<V.Scalar>, _ qh: Int, _ qw: Int,
                               _ qx: UnsafePointer<V.Scalar>, _ qy: UnsafePointer<V.Scalar>, record: UnsafeMutablePointer<Double>?,
                               thetaIsZero: Bool, _ written: inout WrittenRect) where V.Scalar: LaneScalar {
    let out = c.output, inl = c.input
    let ho = c.h.output, wo = c.w.output
    let rows = validRange(qh, ho), cols = validRange(qw, wo)
    Self.clearStale(dst, out, rows: rows, cols: cols, &written)
    if cols.isEmpty { return }
    let ld = inl.cols
    let weights = LaneWeights<V>(c.layer, inverse: c.inverseTaps)
    for oh in rows {
      let row = (oh &+ out.originRow) &* out.cols &+ out.originCol
      let dS = dst.0 + row, dT = dst.1 + row
      // Input row of tap a, column of output ow and tap b: base + a·ld + ow·sw + b.
      let base = (oh &* c.h.stride &- c.h.padLow &+ inl.originRow) &* ld &+ inl.originCol &- c.w.padLow
      let sS = UnsafePointer(src.0 + base), sT = UnsafePointer(src.1 + base)
      let at = c.record + oh * wo
      let qi = qx + at, qj = qy + c.record + (oh + qh) * wo + qw
      // The activation is fused into the vector loop (a self-pair's offset 0 records first,
      // unfused); the map type is chosen once per row, so each loop is specialised.
      let fused = record == nil ? c.map : nil
      switch fused?.kind {
      case .abReLU?:
        convolveRow(V.self, c, sS, sT, ld: ld, dS, dT, cols, weights, thetaIsZero: thetaIsZero, qi: qi, qj: qj,
            ReLUSliceMap(ABReLUPair(angular: fused!.angular, even: fused!.even)))
      case .erf?:
        convolveRow(V.self, c, sS, sT, ld: ld, dS, dT, cols, weights, thetaIsZero: thetaIsZero, qi: qi, qj: qj, ErfSliceMap())
      case .identity?, nil:
        convolveRow(V.self, c, sS, sT, ld: ld, dS, dT, cols, weights, thetaIsZero: thetaIsZero, qi: qi, qj: qj, NoSliceMap())
        if let map = c.map, let record {
          Self.mapSegment(V.self, map, dS, dT, cols, qi: qi, qj: qj, record: record + at)
        }
      }
    }
  }

  /// One output row: the taps, the weights and the map, a vector at a time.
  @inline(__always)
  func convolveRow<V: LaneVector, M: SliceMap>(_: V.Type, _ c: Conv, _ sS: UnsafePointer<V.Scalar>, _ sT: UnsafePointer<V.Scalar>, ld: Int,
                                       _ dS: UnsafeMutablePointer<V.Scalar>, _ dT: UnsafeMutablePointer<V.Scalar>, _ cols: Range<Int>,
                                       _ weights: LaneWeights<V>, thetaIsZero: Bool, qi: UnsafePointer<V.Scalar>,
                                       qj: UnsafePointer<V.Scalar>, _ map: M) where V.Scalar: LaneScalar {
    if c.w.stride == 1 && c.h.live.count == 3 && c.w.live.count == 3 {
      Self.taps3x3(V.self, sS, sT, ld: ld, a0: c.h.live.lowerBound, b0: c.w.live.lowerBound, dS, dT, cols,
                   weights, thetaIsZero: thetaIsZero, qi: qi, qj: qj, map)
    } else {
      Self.taps(V.self, sS, sT, ld: ld, liveH: c.h.live, liveW: c.w.live, stride: c.w.stride, dS, dT, cols,
                weights, thetaIsZero: thetaIsZero, qi: qi, qj: qj, map)
    }
  }

  /// Makes every position of `l` outside the valid rectangle `rows × cols` zero, knowing what the
  /// buffer held: `written` (the layout and rectangle of the last slice written there; all else
  /// zero), then records the new rectangle. Between neighbouring offsets only a column or a row
  /// changes.
  @inline(__always)
  static func clearStale<S>(_ buf: SlicePair<S>, _ l: SliceLayout, rows: Range<Int>, cols: Range<Int>,
                            _ written: inout WrittenRect) where S: BinaryFloatingPoint {
    let rows = cols.isEmpty ? 0..<0 : rows
    defer { written = WrittenRect(layout: l, rows: rows, cols: cols) }
    guard written.layout == l else { clearOutside(buf, l, rows: rows, cols: cols); return }
    @inline(__always) func zero(_ r: Int, _ c: Range<Int>) {
      let o = (r + l.originRow) * l.cols + l.originCol
      for k in c { buf.0[o + k] = 0; buf.1[o + k] = 0 }
    }
    for r in written.rows {
      if rows.contains(r) {
        // Columns written before but outside now.
        zero(r, written.cols.lowerBound ..< max(written.cols.lowerBound, min(written.cols.upperBound, cols.lowerBound)))
        zero(r, max(written.cols.lowerBound, cols.upperBound) ..< max(written.cols.upperBound, cols.upperBound))
      } else {
        zero(r, written.cols)
      }
    }
  }

  /// Zeros every position of `layout` outside the valid rectangle `rows × cols` (of the grid).
  @inline(__always)
  static func clearOutside<S>(_ buf: SlicePair<S>, _ l: SliceLayout, rows: Range<Int>, cols: Range<Int>) where S: BinaryFloatingPoint {
    let lo = cols.lowerBound + l.originCol, hi = cols.upperBound + l.originCol
    @inline(__always) func zero(_ p: UnsafeMutablePointer<S>, _ n: Int) { for i in 0..<n { p[i] = 0 } }
    for r in 0..<l.rows {
      let o = r * l.cols
      if rows.contains(r - l.originRow) {
        zero(buf.0 + o, lo)
        zero(buf.1 + o, lo)
        zero(buf.0 + o + hi, l.cols - hi)
        zero(buf.1 + o + hi, l.cols - hi)
      } else {
        zero(buf.0 + o, l.cols)
        zero(buf.1 + o, l.cols)
      }
    }
  }

  /// `body(ow, lanes)` over `cols` a vector at a time; the last vector overlaps the one before
  /// (its recomputed lanes take the same operations, so they store the same bits), a row
  /// narrower than a vector is one call with `lanes < w`.
  @inline(__always)
  static func vectors(_ w: Int, _ cols: Range<Int>, _ body: (Int, Int) -> Void) {
    if cols.count < w { body(cols.lowerBound, cols.count); return }
    var ow = cols.lowerBound
    while true {
      body(ow, w)
      if ow + w >= cols.upperBound { break }
      ow = min(ow + w, cols.upperBound - w)
    }
  }

  /// Maps lanes `0..<lanes` of `(s, t)` (the activation, with the variances at `ow`) and
  /// stores them at `ow`. A partial vector's other lanes take the variances of its lane 0.
  @inline(__always)
  static func put<V: LaneVector, M: SliceMap>(_ s: V, _ t: V, _ dS: UnsafeMutablePointer<V.Scalar>, _ dT: UnsafeMutablePointer<V.Scalar>,
                                              _ ow: Int, _ lanes: Int, qi: UnsafePointer<V.Scalar>, qj: UnsafePointer<V.Scalar>,
                                              _ map: M) where V.Scalar: LaneScalar {
    var (s, t) = (s, t)
    if lanes == V.scalarCount {
      if !M.isIdentity {
        let (sa, dot) = map.pair(s, UnsafeRawPointer(qi + ow).loadUnaligned(as: V.self), UnsafeRawPointer(qj + ow).loadUnaligned(as: V.self))
        s = sa
        t = t * dot
      }
      UnsafeMutableRawPointer(dS + ow).storeBytes(of: s, as: V.self)
      UnsafeMutableRawPointer(dT + ow).storeBytes(of: t, as: V.self)
    } else {
      if !M.isIdentity {
        var qv = V(repeating: qi[ow]), qjv = V(repeating: qj[ow])
        for l in 0..<lanes { qv[l] = qi[ow + l]; qjv[l] = qj[ow + l] }
        let (sa, dot) = map.pair(s, qv, qjv)
        s = sa
        t = t * dot
      }
      for l in 0..<lanes { dS[ow + l] = s[l]; dT[ow + l] = t[l] }
    }
  }

  /// A 3×3 window with unit width stride (the common case), unrolled: the nine taps summed in
  /// row order, then the weights. Lanes past a narrow row read zeros or values of the layout
  /// (never past the buffer: each is followed by slack) and are not stored.
  @inline(__always)
  static func taps3x3<V: LaneVector, M: SliceMap>(_: V.Type, _ sS: UnsafePointer<V.Scalar>, _ sT: UnsafePointer<V.Scalar>, ld: Int,
                                                  a0: Int, b0: Int,
                                                  _ dS: UnsafeMutablePointer<V.Scalar>, _ dT: UnsafeMutablePointer<V.Scalar>, _ cols: Range<Int>,
                                                  _ weights: LaneWeights<V>, thetaIsZero: Bool, qi: UnsafePointer<V.Scalar>,
                                                  qj: UnsafePointer<V.Scalar>, _ map: M) where V.Scalar: LaneScalar {
    let o0 = a0 &* ld &+ b0, o1 = o0 &+ ld, o2 = o1 &+ ld
    @inline(__always) func load(_ p: UnsafePointer<V.Scalar>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) func nine(_ p: UnsafePointer<V.Scalar>) -> V {
      var acc = load(p + o0)
      acc += load(p + (o0 &+ 1))
      acc += load(p + (o0 &+ 2))
      acc += load(p + o1)
      acc += load(p + (o1 &+ 1))
      acc += load(p + (o1 &+ 2))
      acc += load(p + o2)
      acc += load(p + (o2 &+ 1))
      acc += load(p + (o2 &+ 2))
      return acc
    }
    let w = V.scalarCount
    @inline(__always) func one(_ ow: Int, _ lanes: Int) {
      let (s, t) = weights.apply(nine(sS + ow), thetaIsZero ? V() : nine(sT + ow))
      put(s, t, dS, dT, ow, lanes, qi: qi, qj: qj, map)
    }
    if cols.count < w { one(cols.lowerBound, cols.count); return }
    // Two vectors a step: two independent chains through the map's square root and
    // divisions, which are latency-bound one vector at a time. The last vectors overlap the
    // ones before (recomputed lanes store the same bits).
    var ow = cols.lowerBound
    while ow < cols.upperBound {
      let a = min(ow, cols.upperBound - w)
      let b = min(ow + w, cols.upperBound - w)
      if a == b { one(a, w); break }
      let (s1, t1) = weights.apply(nine(sS + a), thetaIsZero ? V() : nine(sT + a))
      let (s2, t2) = weights.apply(nine(sS + b), thetaIsZero ? V() : nine(sT + b))
      put2(s1, t1, s2, t2, dS, dT, a, b, qi: qi, qj: qj, map)
      ow += 2 * w
    }
  }

  /// `put` of two full vectors at once (their maps interleaved).
  @inline(__always)
  static func put2<V: LaneVector, M: SliceMap>(_ s1: V, _ t1: V, _ s2: V, _ t2: V, _ dS: UnsafeMutablePointer<V.Scalar>,
                                               _ dT: UnsafeMutablePointer<V.Scalar>, _ a: Int, _ b: Int,
                                               qi: UnsafePointer<V.Scalar>, qj: UnsafePointer<V.Scalar>, _ map: M) where V.Scalar: LaneScalar {
    @inline(__always) func load(_ p: UnsafePointer<V.Scalar>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    var (s1, t1, s2, t2) = (s1, t1, s2, t2)
    if !M.isIdentity {
      let (sa, da) = map.pair(s1, load(qi + a), load(qj + a))
      let (sb, db) = map.pair(s2, load(qi + b), load(qj + b))
      (s1, t1, s2, t2) = (sa, t1 * da, sb, t2 * db)
    }
    UnsafeMutableRawPointer(dS + a).storeBytes(of: s1, as: V.self)
    UnsafeMutableRawPointer(dT + a).storeBytes(of: t1, as: V.self)
    UnsafeMutableRawPointer(dS + b).storeBytes(of: s2, as: V.self)
    UnsafeMutableRawPointer(dT + b).storeBytes(of: t2, as: V.self)
  }

  /// Any window and width stride: every live tap, in row order.
  @inline(__always)
  static func taps<V: LaneVector, M: SliceMap>(_: V.Type, _ sS: UnsafePointer<V.Scalar>, _ sT: UnsafePointer<V.Scalar>, ld: Int,
                                               liveH: Range<Int>, liveW: Range<Int>, stride sw: Int,
                                               _ dS: UnsafeMutablePointer<V.Scalar>, _ dT: UnsafeMutablePointer<V.Scalar>, _ cols: Range<Int>,
                                               _ weights: LaneWeights<V>, thetaIsZero: Bool, qi: UnsafePointer<V.Scalar>,
                                               qj: UnsafePointer<V.Scalar>, _ map: M) where V.Scalar: LaneScalar {
    let w = V.scalarCount
    @inline(__always) func load(_ p: UnsafePointer<V.Scalar>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    vectors(w, cols) { ow, lanes in
      var accS = V(), accT = V()
      for a in liveH {
        for b in liveW {
          let e = a &* ld &+ ow &* sw &+ b
          if sw == 1 && lanes == w {
            accS += load(sS + e)
            if !thetaIsZero { accT += load(sT + e) }
          } else {
            var vs = V(), vt = V()
            for l in 0..<lanes {
              vs[l] = sS[e &+ l &* sw]
              if !thetaIsZero { vt[l] = sT[e &+ l &* sw] }
            }
            accS += vs
            accT += vt
          }
        }
      }
      let (s, t) = weights.apply(accS, accT)
      put(s, t, dS, dT, ow, lanes, qi: qi, qj: qj, map)
    }
  }

  /// The sums of a finished slice's valid rectangle (`ld` values per row) in float64: a vector
  /// of partial sums in a fixed order, then its lanes and the rows' tails.
  @inline(__always)
  static func total<V: LaneVector>(_: V.Type, _ buf: SlicePair<V.Scalar>, rows: Range<Int>, cols: Range<Int>, ld: Int) -> (Double, Double) {
    let w = 4
    var accS = SIMD4<Double>(), accT = SIMD4<Double>()
    var tailS = 0.0, tailT = 0.0
    @inline(__always) func load(_ p: UnsafePointer<V.Scalar>) -> SIMD4<Double> {
      SIMD4<Double>(Double(p[0]), Double(p[1]), Double(p[2]), Double(p[3]))
    }
    for oh in rows {
      let rS = UnsafePointer(buf.0 + oh * ld), rT = UnsafePointer(buf.1 + oh * ld)
      var c = cols.lowerBound
      while c + w <= cols.upperBound {
        accS += load(rS + c)
        accT += load(rT + c)
        c += w
      }
      while c < cols.upperBound { tailS += Double(rS[c]); tailT += Double(rT[c]); c += 1 }
    }
    return (accS.sum() + tailS, accT.sum() + tailT)
  }

  /// Adds a finished slice into the pooled array: `Σ(p, p + q)` to every `(o, o′)` whose
  /// windows hold `p` and `p + q` (divided by the windows' sizes once every slice is in).
  static func accumulate<S: LaneScalar>(_ buf: SlicePair<S>, rows: Range<Int>, cols: Range<Int>,
                                        ld: Int, _ qh: Int, _ qw: Int, _ pool: Pool, into p: SlicePair<Double>) {
    let wo = pool.grid.w, n = pool.grid.h * pool.grid.w
    // Column targets of this offset: for each column, the (ow·n + ow′) it adds to.
    var colStart = [Int](repeating: 0, count: cols.count + 1)
    var colIndex: [Int] = []
    colIndex.reserveCapacity(cols.count)
    var single = true
    for (k, pw) in cols.enumerated() {
      for ow in pool.targetsW[pw] { for ow2 in pool.targetsW[pw + qw] { colIndex.append(ow * n + ow2) } }
      colStart[k + 1] = colIndex.count
      single = single && colStart[k + 1] == k + 1
    }
    colIndex.withUnsafeBufferPointer { ci in
      colStart.withUnsafeBufferPointer { cs in
        let lo = cols.lowerBound
        for ph in rows {
          let rS = buf.0 + ph * ld, rT = buf.1 + ph * ld
          for oh in pool.targetsH[ph] {
            for oh2 in pool.targetsH[ph + qh] {
              let base = oh * wo * n + oh2 * wo
              let dS = p.0 + base, dT = p.1 + base
              if single {
                // One target per column (windows that do not overlap).
                for k in 0..<cols.count {
                  let e = ci[k]
                  dS[e] += Double(rS[lo + k])
                  dT[e] += Double(rT[lo + k])
                }
              } else {
                for k in 0..<cols.count {
                  for e in cs[k] ..< cs[k + 1] {
                    dS[ci[e]] += Double(rS[lo + k])
                    dT[ci[e]] += Double(rT[lo + k])
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

/// What a slice buffer holds: the layout and valid rectangle of the last slice written (zeros
/// everywhere else); nil layout: unknown (cleared whole before use).
struct WrittenRect {
  var layout: SliceLayout? = nil
  var rows: Range<Int> = 0..<0
  var cols: Range<Int> = 0..<0
}

/// A convolution's weights on the tap sums of a vector: `(Σ, Θ)` times `1/taps`, then the
/// affine map (`DenseLayer`'s formulas, on the lanes' type).
struct LaneWeights<V: LaneVector> {
  let inverse: V.Scalar
  let w2: V.Scalar
  let b2: V.Scalar
  let fanIn: V.Scalar?
  let biasTerm: V.Scalar

  @inline(__always) init(_ layer: DenseLayer, inverse: Double) {
    self.inverse = V.Scalar(inverse)
    w2 = V.Scalar(layer.weightVariance)
    b2 = V.Scalar(layer.biasVariance)
    fanIn = layer.standardFanIn.map { V.Scalar($0) }
    biasTerm = V.Scalar(layer.standardBiasTerm)
  }

  @inline(__always) func apply(_ sumS: V, _ sumT: V) -> (V, V) {
    let s = sumS * inverse, t = sumT * inverse
    if let fanIn { return (w2 * s + b2, fanIn * s + w2 * t + biasTerm) }
    let sNew = w2 * s + b2
    return (sNew, sNew + w2 * t)
  }
}

/// An activation fused into a convolution's vector loop.
protocol SliceMap {
  static var isIdentity: Bool { get }
  func pair<V: LaneVector>(_ s: V, _ qi: V, _ qj: V) -> (V, V) where V.Scalar: LaneScalar
}

struct ReLUSliceMap: SliceMap {
  let m: ABReLUPair
  init(_ m: ABReLUPair) { self.m = m }
  static var isIdentity: Bool { false }
  @inline(__always) func pair<V: LaneVector>(_ s: V, _ qi: V, _ qj: V) -> (V, V) where V.Scalar: LaneScalar { m.pair(s, lanes: qi, qj) }
}

struct ErfSliceMap: SliceMap {
  static var isIdentity: Bool { false }
  @inline(__always) func pair<V: LaneVector>(_ s: V, _ qi: V, _ qj: V) -> (V, V) where V.Scalar: LaneScalar { ErfPair().pair(s, lanes: qi, qj) }
}

struct NoSliceMap: SliceMap {
  static var isIdentity: Bool { true }
  @inline(__always) func pair<V: LaneVector>(_ s: V, _ qi: V, _ qj: V) -> (V, V) where V.Scalar: LaneScalar { (s, V(repeating: 1)) }
}

// MARK: - Cost

extension SlicePlan {
  /// Per-element costs of the slice executor in nanoseconds of one thread, measured for five
  /// 3×3 ReLU layers on 28×28 images (docs/performance.md): a tap of Σ or Θ, the arc-cosine or
  /// erf map, the rest of a layer's element (weights, stores, clearing), an input element
  /// (per channel) and a finished one (its sink). float32 halves the vector work.
  static let nsPerTap = 0.12, nsPerMap = 4.0, nsPerElement = 0.6, nsPerGather = 0.5, nsPerChannel = 0.3, nsPerSink = 0.5

  /// The number of (pixel, offset) elements a layer of output grid (ho, wo) computes for the
  /// stage's offsets, each scaled by `after` (the stride product behind the layer).
  static func elements(_ stage: Stage, _ ho: Int, _ wo: Int, after: (h: Int, w: Int)) -> Double {
    let rows = stage.offsetsH.reduce(0) { $0 + validRange($1 * after.h, ho).count }
    let cols = stage.offsetsW.reduce(0) { $0 + validRange($1 * after.w, wo).count }
    return Double(rows) * Double(cols)
  }

  /// The estimated operations per entry, in the planner's unit (the fully-connected kernel's
  /// flops at `BuildPlan.flopsPerSecondPerThread` = 1.3e10: 13 per nanosecond).
  func cost(float32: [Bool]) -> Double {
    var ns = 0.0
    for (k, stage) in stages.enumerated() {
      let vector = float32[k] ? 0.5 : 1.0
      let input = Self.elements(stage, stage.grid.h, stage.grid.w, after: stage.scale)
      ns += input * (Self.nsPerGather + (k == 0 ? Self.nsPerChannel * Double(channels) : 0))
      if let map = stage.gatherMap, map.kind != .identity { ns += input * Self.nsPerMap * vector }
      var theta = k > 0
      for c in stage.convs {
        let n = Self.elements(stage, c.h.output, c.w.output, after: c.after)
        let taps = Double(c.h.live.count * c.w.live.count) * (theta ? 2 : 1)
        ns += n * (Self.nsPerElement + vector * (taps * Self.nsPerTap + (c.map.map { $0.kind == .identity ? 0 : Self.nsPerMap } ?? 0)))
        theta = true
      }
      ns += Self.elements(stage, stage.outGrid.h, stage.outGrid.w, after: (1, 1)) * Self.nsPerSink
    }
    return ns * 13
  }
}
