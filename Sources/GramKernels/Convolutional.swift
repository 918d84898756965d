#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GramMicroKernels
import GramMicroKernelsAVX512
import GramNetwork

/// The infinite-width NTK and NNGP of a convolutional network (CNN-GP and CNTK: Novak et al.
/// 2019, Arora et al. 2019) with neural-tangents' `stax` conventions: NHWC inputs whose
/// pixel-pair covariance is the channel sum divided by the channel count; `conv` with shared
/// weights (both pixels of a pair see the same tap), the divisor always the filter size, SAME
/// padding as `lax.padtype_to_pads` (the odd pixel at the end), CIRCULAR by wrap-around;
/// `avg_pool` (stride default 1, `normalize_edges`); `global_avg_pool`; `flatten` (the mean of
/// the same-position covariances); dense layers and activations after the spatial part.
///
/// Two paths, chosen from the layer list as neural-tangents chooses them: without pooling the
/// readout needs only same-position covariances (`diagonal`, O(H·W) per pair, "CNN-V"); any
/// pooling needs the full (H·W)² pixel-pair covariance per pair (`full`). Self-pairs take the
/// exact θ = 0 forms on same-position entries. Every entry is a fixed sequence of scalar
/// operations on its two images, so any tiling, rank count or instruction set gives the same
/// bits.
public struct Convolutional: Sendable {
  /// One spatial axis of a windowed operation: output `o` and tap `a` read input
  /// `o·stride + a − padLow` (wrapped when circular, else absent outside `0..<input`).
  struct Axis: Sendable, Equatable {
    let input: Int
    let output: Int
    let window: Int
    let stride: Int
    let padLow: Int
    let circular: Bool
    /// The taps that can read the input for some output (a superset of those that do): a
    /// SAME filter wider than its input has taps that only ever see padding, which add
    /// nothing; every loop over taps runs over `live` only, which skips exactly terms the full
    /// loop skips one by one (`source` < 0), so the sums and their order, and the bytes, are
    /// the same. At most `(output − 1)·stride + input` ≤ 2·input − 1 taps.
    let live: Range<Int>

    init(input: Int, window: Int, stride: Int, padding: Padding) {
      self.input = input
      self.window = window
      self.stride = stride
      circular = padding == .circular
      switch padding {
      case .valid:
        output = (input - window) / stride + 1
        padLow = 0
      case .same, .circular:
        output = (input + stride - 1) / stride
        let total = max((output - 1) * stride + window - input, 0)
        padLow = total / 2
      }
      if padding == .same {
        // Tap a reads o·stride + a − padLow: inside 0..<input for some o in 0..<output only if
        // padLow − (output − 1)·stride ≤ a ≤ padLow + input − 1.
        let lo = max(0, padLow - (output - 1) * stride), hi = max(lo, min(window, padLow + input))
        live = lo..<hi
      } else {
        live = 0..<max(window, 0)
      }
    }

    /// The input index of output `o`, tap `a`; -1 in the padding.
    @inline(__always) func source(_ o: Int, _ a: Int) -> Int {
      let i = o * stride + a - padLow
      if circular { return ((i % input) + input) % input }
      return i >= 0 && i < input ? i : -1
    }

    /// For stride 1 without wrap-around, the outputs whose tap `a` is inside the input,
    /// `lo..<hi`, and the offset from output to input index; nil offset otherwise.
    @inline(__always) func contiguous(_ a: Int) -> (Int, Int, Int?) {
      guard stride == 1, !circular else { return (0, output, nil) }
      let offset = a - padLow
      return (max(0, -offset), min(output, input - offset), offset)
    }

    /// Taps of output `o` that fall inside the input.
    func inRange(_ o: Int) -> Int { live.filter { source(o, $0) >= 0 }.count }
  }

  /// An affine layer's constants (the same formulas as `DenseLayer`, on one pair).
  struct Weights: Sendable, Equatable {
    let w2: Double
    let b2: Double
    /// nil: ntk parameterization; else the standard one's fan-in.
    let fanIn: Double?
    let biasTerm: Double

    init(_ a: Affine, fanIn: Int) {
      w2 = a.wStd * a.wStd
      b2 = (a.bStd ?? 0) * (a.bStd ?? 0)
      self.fanIn = a.parameterization == .standard ? Double(fanIn) : nil
      biasTerm = a.bStd == nil ? 0 : 1
    }

    /// `(Σ′, Θ′)` from the (tap-averaged) `(Σ, Θ)`.
    @inline(__always) func apply(_ s: Double, _ t: Double) -> (Double, Double) {
      if let fanIn { return (w2 * s + b2, fanIn * s + w2 * t + biasTerm) }
      let sNew = w2 * s + b2
      return (sNew, sNew + w2 * t)
    }
  }

  enum Spatial: Sendable {
    case conv(h: Axis, w: Axis, Weights)
    /// The activation of the spatial stage; `record` is where its input variances sit in a
    /// sample's record.
    case activation(ActivationMap, record: Int)
    /// `divisors[o]`: what output position `o`'s sums are divided by on its side of a pair
    /// (the window size, or with `normalize_edges` and SAME padding its in-range taps).
    case pool(h: Axis, w: Axis, divisors: [Double])
  }

  enum Collapse: Sendable { case flatten, globalAvgPool }

  enum Tail: Sendable {
    case dense(Weights)
    case activation(ActivationMap, record: Int)
  }

  let inputShape: [Int]
  let spatial: [Spatial]
  /// Grid (h, w) before each spatial op, and after the last.
  let grids: [(h: Int, w: Int)]
  let collapse: Collapse
  let tail: [Tail]
  /// Full pixel-pair covariances (pooling present) or same-position ones only.
  public let fullSpatial: Bool
  /// Doubles a sample's record holds: its variance maps before each spatial activation, and
  /// its variance before each tail activation.
  let recordCount: Int
  public var gramPrecision: GramPrecision
  /// The instruction set of the vector loops (every choice gives the same bits; tests compare them).
  public var isa: GramISA = .current
  /// The executor by pixel offset (nil: the full pixel-pair arrays, for circular windows; tests
  /// set it to nil to compare the two).
  var slices: SlicePlan? = nil
  /// The arithmetic of the slices (`compute_precision`): float64, float32, or mixed.
  public let computePrecision: ComputePrecision
  /// Which stages (the layers between two poolings) compute in float32: every one for
  /// float32; for mixed every one but the last (the one the readout reads), float64 otherwise.
  var float32Stages: [Bool] = []

  /// Why the network takes its path, for `info` and `plan`.
  public var pathDescription: String {
    if let slices {
      let offsets = slices.stages.last.map { $0.offsetsH.count * $0.offsetsW.count } ?? 1
      return fullSpatial
        ? "convolutional, full pixel-pair covariances (pooling mixes positions), computed by pixel offset: \(slices.stages.count) stage(s) between poolings, each offset's H·W slice through a stage's layers in cache (\(offsets) offsets in the last stage)"
        : "convolutional, same-position covariances only (the offset-0 slice, H·W per pair, CNN-V): no pooling before the flatten readout"
    }
    return fullSpatial
      ? "convolutional, full pixel-pair covariances ((H·W)² per pair): pooling mixes positions"
      : "convolutional, same-position covariances only (H·W per pair, CNN-V): no pooling before the flatten readout"
  }

  /// Compiles a layer list with convolutions or pooling for inputs of `inputShape` (H, W, C).
  /// Throws a `NetworkError` naming the layer it cannot compute.
  public init(network: Network, inputShape: [Int], gramPrecision: GramPrecision = .float64,
              computePrecision: ComputePrecision = .float64) throws {
    guard gramPrecision == .float64 else {
      throw NetworkError(position: nil, "gram_precision float32 applies to fully-connected networks only (convolutional kernels compute in float64)")
    }
    guard inputShape.count == 3 else {
      throw NetworkError(position: nil, "a convolutional network needs images (H×W×C samples), got shape \(inputShape)")
    }
    self.inputShape = inputShape
    self.gramPrecision = gramPrecision
    self.computePrecision = computePrecision
    var spatial: [Spatial] = [], tail: [Tail] = []
    var grids: [(h: Int, w: Int)] = [(inputShape[0], inputShape[1])]
    var channels = inputShape[2]
    var collapse: Collapse? = nil
    var flatFanIn = 0  // the fan-in of the first dense layer after the collapse
    var record = 0
    var previousWasActivation = false
    var hasPooling = false
    var lastKind: String? = nil
    for (k, layer) in network.layers.enumerated() {
      func fail(_ problem: String) -> NetworkError { NetworkError(position: k, layerType: layer.typeName, problem) }
      let g = grids.last!
      if case .activation = layer {
        guard lastKind != nil else { throw fail("an activation cannot be the first layer: start with conv or dense") }
        guard !previousWasActivation else { throw fail("two activations in a row are not implemented: put a layer between them") }
      }
      switch (layer, collapse) {
      case (.conv(let a, let window), nil):
        let h = Axis(input: g.h, window: window.size[0], stride: window.strides[0], padding: window.padding)
        let w = Axis(input: g.w, window: window.size[1], stride: window.strides[1], padding: window.padding)
        guard h.output >= 1, w.output >= 1 else { throw fail("the filter is larger than its \(g.h)×\(g.w) input with VALID padding") }
        try Self.checkCircular(window, input: g, what: "filter", fail)
        let (taps, o1) = window.size[0].multipliedReportingOverflow(by: window.size[1])
        let (fanIn, o2) = channels.multipliedReportingOverflow(by: taps)
        guard !o1, !o2, fanIn <= 1 << 53 else { throw fail("the fan-in \(channels) channels × \(window.size[0])×\(window.size[1]) taps is absurdly large") }
        spatial.append(.conv(h: h, w: w, Weights(a, fanIn: fanIn)))
        grids.append((h.output, w.output))
        channels = a.width
      case (.avgPool(let window, let normalize), nil):
        let h = Axis(input: g.h, window: window.size[0], stride: window.strides[0], padding: window.padding)
        let w = Axis(input: g.w, window: window.size[1], stride: window.strides[1], padding: window.padding)
        guard h.output >= 1, w.output >= 1 else { throw fail("the window is larger than its \(g.h)×\(g.w) input with VALID padding") }
        try Self.checkCircular(window, input: g, what: "window", fail)
        let counts = (0..<(h.output * w.output)).map { o -> Double in
          normalize && window.padding == .same ? Double(h.inRange(o / w.output) * w.inRange(o % w.output)) : Double(h.window * w.window)
        }
        spatial.append(.pool(h: h, w: w, divisors: counts))
        grids.append((h.output, w.output))
        hasPooling = true
      case (.activation(let act), nil):
        spatial.append(.activation(ActivationMap(act), record: record))
        record += g.h * g.w
        grids.append(g)
      case (.globalAvgPool, nil):
        collapse = .globalAvgPool
        flatFanIn = channels
        hasPooling = true
      case (.flatten, nil):
        collapse = .flatten
        let (fanIn, overflow) = (g.h * g.w).multipliedReportingOverflow(by: channels)
        guard !overflow, fanIn <= 1 << 53 else { throw fail("the flattened size \(g.h)×\(g.w)×\(channels) is absurdly large") }
        flatFanIn = fanIn
      case (.dense(let a), nil):
        // A dense layer over an image sees it flat (Flatten, then Dense).
        collapse = .flatten
        let (fanIn, overflow) = (g.h * g.w).multipliedReportingOverflow(by: channels)
        guard !overflow, fanIn <= 1 << 53 else { throw fail("the fan-in \(g.h)×\(g.w)×\(channels) is absurdly large") }
        tail.append(.dense(Weights(a, fanIn: fanIn)))
        flatFanIn = a.width
      case (.dense(let a), _):
        tail.append(.dense(Weights(a, fanIn: flatFanIn)))
        flatFanIn = a.width
      case (.activation(let act), _):
        tail.append(.activation(ActivationMap(act), record: record))
        record += 1
      case (.flatten, _):
        break
      case (.conv, _), (.avgPool, _), (.globalAvgPool, _):
        throw fail("needs images, but the network is already flat here")
      }
      previousWasActivation = layer.isActivation
      lastKind = layer.typeName
    }
    guard let collapse else {
      throw NetworkError(position: nil, "the layer list has no readout: it ends with images, not one vector per sample; \(Network.readoutAdvice)")
    }
    self.spatial = spatial
    self.grids = grids
    self.collapse = collapse
    self.tail = tail
    fullSpatial = hasPooling
    recordCount = record
    // The slice executor takes every network without circular windows (ConvolutionalSlices.swift).
    if Self.executorOverride != "full", let plan = try SlicePlan(self) {
      slices = plan
      let n = plan.stages.count
      switch computePrecision {
      case .float64: float32Stages = Array(repeating: false, count: n)
      case .float32: float32Stages = Array(repeating: true, count: n)
      case .mixed: float32Stages = (0..<n).map { $0 < n - 1 }
      }
      return
    }
    guard computePrecision == .float64 else {
      throw NetworkError(position: nil, "compute_precision \(computePrecision.rawValue) needs windows without CIRCULAR padding (circular networks compute in float64)")
    }
    // A pair's covariances live in six buffers of `maxCells` doubles per thread: refuse sizes
    // that cannot be held (overflow-safe) rather than fail allocating them.
    var largest = 1
    for (k, g) in grids.enumerated() {
      for cells in [g.h * g.w] + (k + 1 < grids.count ? [grids[k + 1].h * g.w] : []) {
        let (square, overflow) = cells.multipliedReportingOverflow(by: hasPooling ? cells : 1)
        largest = overflow ? Int.max : max(largest, square)
      }
    }
    let limit = 1 << 30  // 8 GiB per buffer
    guard largest <= limit else {
      let g = grids[0]
      let what = hasPooling ? "full pixel-pair covariances (pooling)" : "same-position covariances"
      throw NetworkError(position: nil, "\(g.h)×\(g.w) images need \(what) of \(largest == Int.max ? "more than 2^63" : String(largest)) values per pair (six buffers of 8 bytes each, per thread): too large; pool or stride earlier, or use smaller images" + (hasPooling ? ", or a flatten readout without pooling" : ""))
    }
  }

  /// `NTKGRAM_CONV_EXECUTOR=full` forces the full pixel-pair path (benchmarks and tests compare
  /// the two executors in one binary).
  static let executorOverride: String? = getenv("NTKGRAM_CONV_EXECUTOR").map { String(cString: $0) }

  /// A CIRCULAR window wraps around its input: wider than the input, its taps repeat pixels
  /// already read (tap a and a + input read the same one for every output), every tap counts
  /// and the work grows with the window without bound. Such windows are refused.
  static func checkCircular(_ window: Window, input g: (h: Int, w: Int), what: String, _ fail: (String) -> NetworkError) throws {
    guard window.padding == .circular, window.size[0] > g.h || window.size[1] > g.w else { return }
    throw fail("a CIRCULAR \(what) of \(window.size[0])×\(window.size[1]) is larger than its \(g.h)×\(g.w) input: it wraps onto itself (its taps repeat the same pixels); use at most \(g.h)×\(g.w), or SAME padding (whose taps beyond the image add nothing)")
  }

  /// The largest number of covariance entries a pair holds at any point (a separable step's
  /// intermediate, output rows by input columns, included).
  var maxCells: Int {
    var m = 1
    for (k, g) in grids.enumerated() {
      let p = g.h * g.w
      m = max(m, fullSpatial ? p * p : p)
      if k + 1 < grids.count {
        let mixed = grids[k + 1].h * g.w
        m = max(m, fullSpatial ? mixed * mixed : mixed)
      }
    }
    return m
  }
}

// MARK: - Prepared features

/// A dataset prepared for convolutional tiles: the images, each one's record of variances and
/// its exact self-pair values.
public struct ConvFeatures: Sendable {
  public let rows: Int
  let values: [Double]
  let valuesPerSample: Int
  let records: [Double]
  /// The records rounded to float32 (what float32 stages read).
  let records32: [Float]
  let recordCount: Int
  public let diagonalNTK: [Double]
  public let diagonalNNGP: [Double]
  let rowKey: [UInt64]

  func equalRows(_ i: Int, _ other: ConvFeatures, _ j: Int) -> Bool {
    rowKey[i] == other.rowKey[j] && values[i * valuesPerSample ..< (i + 1) * valuesPerSample] == other.values[j * valuesPerSample ..< (j + 1) * valuesPerSample]
  }
}

// MARK: - The pair recursion

extension Convolutional {
  /// Runs the recursion on the pair `(x, y)` with their records (`qx`, `qy`), in `scratch`
  /// (`6·maxCells`: the covariances, the next layer's, and a separable step's intermediate). With `same` (x is y) the same-position entries take the exact θ = 0 forms
  /// and the record is written to `qx` as it is met. Returns `(ntk, nngp)`.
  func pair(_ x: UnsafePointer<Double>, _ qx: UnsafeMutablePointer<Double>, _ y: UnsafePointer<Double>,
            _ qy: UnsafePointer<Double>, same: Bool, scratch: UnsafeMutablePointer<Double>,
            qx32: UnsafePointer<Float>? = nil, qy32: UnsafePointer<Float>? = nil) -> (Double, Double) {
    if let slices {
      let records = PairRecords(qx: qx, qy: qy, qx32: qx32, qy32: qy32)
      var (sv, tv) = slices.run(x, y, records: records, same: same, float32: float32Stages, scratch: scratch)
      (sv, tv) = applyTail(sv, tv, same: same, qx: { qx[$0] }, qy: { qy[$0] }, record: { qx[$0] = $1 })
      return (tv, sv)
    }
    let cells = maxCells
    var s = scratch, t = scratch + cells
    var altS = scratch + 2 * cells, altT = scratch + 3 * cells
    let mid = (scratch + 4 * cells, scratch + 5 * cells)
    let c = inputShape[2]
    var g = grids[0]
    var p = g.h * g.w
    let cd = Double(c)
    // The input layer: channel sums over the channel count.
    if fullSpatial {
      for i in 0..<p {
        for j in 0..<p {
          var acc = 0.0
          for k in 0..<c { acc += x[i * c + k] * y[j * c + k] }
          s[i * p + j] = acc / cd
          t[i * p + j] = 0
        }
      }
    } else {
      for i in 0..<p {
        var acc = 0.0
        for k in 0..<c { acc += x[i * c + k] * y[i * c + k] }
        s[i] = acc / cd
        t[i] = 0
      }
    }
    var skipNext = false
    for (index, op) in spatial.enumerated() {
      let out = grids[index + 1]
      if skipNext {  // an activation already applied, fused into the convolution before it
        skipNext = false
        g = out
        p = g.h * g.w
        continue
      }
      switch op {
      case .conv(let h, let w, let weights):
        if fullSpatial {
          // A pair of two images: the weights and the next activation (if any) are applied to
          // each finished segment while it is in cache (the same operations per entry as one
          // pass after another). A self-pair records its variances first, so it goes unfused.
          var fusedMap: (ActivationMap, Int)? = nil
          if !same, index + 1 < spatial.count, case .activation(let map, let record) = spatial[index + 1] { fusedMap = (map, record) }
          let (os, ot) = (altS, altT)
          let isa = self.isa
          Self.separable(s, t, into: altS, altT, h: h, w: w, inputW: g.w, pairedTaps: true, divisor: Double(h.window * w.window),
                         scratch: mid) { o, oh, ow, oh2 in
            let sS = os + o, sT = ot + o
            for e in 0..<out.w { (sS[e], sT[e]) = weights.apply(sS[e], sT[e]) }
            if let (map, record) = fusedMap {
              Self.mapRow(isa, map.vectorForm, os + o, ot + o, count: out.w, qi: UnsafePointer(qx) + record + oh * out.w + ow,
                          qiStride: 0, qj: qy + record + oh2 * out.w)
            }
          }
          swap(&s, &altS)
          swap(&t, &altT)
          if fusedMap != nil { skipNext = true }
          g = out
          p = g.h * g.w
          continue
        } else {
          Self.diagonalSeparable(s, t, into: altS, altT, h: h, w: w, inputW: g.w, divisor: Double(h.window * w.window), scratch: mid)
        }
        swap(&s, &altS)
        swap(&t, &altT)
        let n = fullSpatial ? out.h * out.w * out.h * out.w : out.h * out.w
        let (ws, wt) = (s, t)
        for e in 0..<n { (ws[e], wt[e]) = weights.apply(ws[e], wt[e]) }
      case .pool(let h, let w, let counts):
        Self.separable(s, t, into: altS, altT, h: h, w: w, inputW: g.w, pairedTaps: false, divisor: 1, scratch: mid)
        swap(&s, &altS)
        swap(&t, &altT)
        let po = out.h * out.w
        counts.withUnsafeBufferPointer { cp in
          for i in 0..<po {
            let rS = s + i * po, rT = t + i * po, ci = cp[i]
            for j in 0..<po { let d = 1 / (ci * cp[j]); rS[j] *= d; rT[j] *= d }
          }
        }
      case .activation(let map, let record):
        if same {
          for i in 0..<p { qx[record + i] = fullSpatial ? s[i * p + i] : s[i] }
        }
        let qxr = UnsafePointer(qx) + record, qyr = (same ? UnsafePointer(qx) : qy) + record
        let kind = map.vectorForm
        if fullSpatial {
          // Row i: pixel i of x against every pixel of y, a vector at a time; a self-pair's
          // same-position entry then takes the exact θ = 0 form.
          for i in 0..<p {
            let row = i * p
            let (savedS, savedT) = (s[row + i], t[row + i])
            Self.mapRow(isa, kind, s + row, t + row, count: p, qi: qxr + i, qiStride: 0, qj: qyr)
            if same {
              let (sa, dot) = map.diagonal(savedS)
              s[row + i] = sa
              t[row + i] = savedT * dot
            }
          }
        } else if same {
          for i in 0..<p {
            let (sa, dot) = map.diagonal(s[i])
            s[i] = sa
            t[i] *= dot
          }
        } else {
          Self.mapRow(isa, kind, s, t, count: p, qi: qxr, qiStride: 1, qj: qyr)
        }
      }
      g = out
      p = g.h * g.w
    }
    // The collapse to one value per pair.
    var sv = 0.0, tv = 0.0
    switch collapse {
    case .flatten:
      for i in 0..<p {
        let e = fullSpatial ? i * p + i : i
        sv += s[e]
        tv += t[e]
      }
      sv /= Double(p)
      tv /= Double(p)
    case .globalAvgPool:
      for e in 0..<(p * p) { sv += s[e]; tv += t[e] }
      sv /= Double(p * p)
      tv /= Double(p * p)
    }
    (sv, tv) = applyTail(sv, tv, same: same, qx: { qx[$0] }, qy: { qy[$0] }, record: { qx[$0] = $1 })
    return (tv, sv)
  }

  /// The layers after the collapse, on one pair's `(Σ, Θ)`: dense layers and activations (a
  /// self-pair records its variance before each activation through `record`).
  @inline(__always)
  func applyTail(_ s: Double, _ t: Double, same: Bool, qx: (Int) -> Double, qy: (Int) -> Double,
                 record: (Int, Double) -> Void) -> (Double, Double) {
    var (sv, tv) = (s, t)
    for op in tail {
      switch op {
      case .dense(let weights): (sv, tv) = weights.apply(sv, tv)
      case .activation(let map, let index):
        if same { record(index, sv) }
        let (sa, dot) = same ? map.diagonal(sv) : map.pair(sv, qx(index), qy(index))
        sv = sa
        tv *= dot
      }
    }
    return (sv, tv)
  }

  /// An activation's pair map over `n` covariances, on the vectors of this CPU (every width
  /// gives the same bits: `pairMapRow`).
  @inline(__always)
  static func mapRow(_ isa: GramISA, _ kind: PairMapKind, _ s: UnsafeMutablePointer<Double>, _ t: UnsafeMutablePointer<Double>, count n: Int,
                     qi: UnsafePointer<Double>, qiStride: Int, qj: UnsafePointer<Double>) {
    if isa == .avx512 {
      AVX512.pairMapRow(kind, s: s, t: t, count: n, qi: qi, qiStride: qiStride, qj: qj)
    } else {
      pairMapRow(Lanes.self, kind, s: s, t: t, count: n, qi: qi, qiStride: qiStride, qj: qj)
    }
  }

  /// A convolution's window over same-position covariances (`Σ[p]`, `Θ[p]` of the input grid):
  /// the height taps into `scratch` (`h.output × inputW`), then the width taps, each entry's
  /// taps in ascending order, then multiplied by `1/divisor`.
  static func diagonalSeparable(_ s: UnsafeMutablePointer<Double>, _ t: UnsafeMutablePointer<Double>,
                                into outS: UnsafeMutablePointer<Double>, _ outT: UnsafeMutablePointer<Double>,
                                h: Axis, w: Axis, inputW: Int, divisor: Double,
                                scratch: (UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>)) {
    let (ms, mt) = scratch
    let wi = inputW, wo = w.output
    for oh in 0..<h.output {
      let mS = ms + oh * wi, mT = mt + oh * wi
      for iw in 0..<wi { mS[iw] = 0; mT[iw] = 0 }
      for a in h.live {
        let ih = h.source(oh, a)
        if ih < 0 { continue }
        let sS = UnsafePointer(s + ih * wi), sT = UnsafePointer(t + ih * wi)
        for iw in 0..<wi { mS[iw] += sS[iw]; mT[iw] += sT[iw] }
      }
      let dS = outS + oh * wo, dT = outT + oh * wo
      for ow in 0..<wo { dS[ow] = 0; dT[ow] = 0 }
      for b in w.live {
        let (lo, hi, offset) = w.contiguous(b)
        if let offset {
          let sS = UnsafePointer(mS + offset), sT = UnsafePointer(mT + offset)
          for ow in lo..<max(lo, hi) { dS[ow] += sS[ow]; dT[ow] += sT[ow] }
        } else {
          for ow in 0..<wo {
            let iw = w.source(ow, b)
            if iw < 0 { continue }
            dS[ow] += mS[iw]
            dT[ow] += mT[iw]
          }
        }
      }
      let scale = 1 / divisor
      for ow in 0..<wo { dS[ow] *= scale; dT[ow] *= scale }
    }
  }

  /// A separable window over the full pixel-pair covariances (`Σ`, `Θ` of the input grid,
  /// `h.input × inputW`): the height taps, then the width taps, one output row `oh` at a time
  /// so that the intermediate slab (`inputW × h.output·inputW` values, in `scratch`) stays in
  /// cache. `pairedTaps` (a convolution's shared weights): both pixels take the same tap,
  /// `window` terms per axis; otherwise (pooling) every tap of one pixel with every tap of the
  /// other, `window²` terms. Each entry sums its taps in ascending order, then is multiplied by
  /// `1/divisor`; `segment(o, ow, oh')` then sees the `w.output` finished entries of output row
  /// `(oh, ow)` for `oh'`, starting at `o` (a fused next step: weights, activation).
  @inline(__always)
  static func separable(_ s: UnsafeMutablePointer<Double>, _ t: UnsafeMutablePointer<Double>,
                        into outS: UnsafeMutablePointer<Double>, _ outT: UnsafeMutablePointer<Double>,
                        h: Axis, w: Axis, inputW: Int, pairedTaps: Bool, divisor: Double,
                        scratch: (UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>),
                        segment: (_ o: Int, _ oh: Int, _ ow: Int, _ oh2: Int) -> Void = { _, _, _, _ in }) {
    let (ms, mt) = scratch
    let wi = inputW, ho = h.output, wo = w.output
    let pin = h.input * wi
    let pmid = ho * wi
    let pout = ho * wo
    let scale = 1 / divisor
    for oh in 0..<ho {
      // Height: m[(w), (oh', w')] = Σ_taps s[(ih, w), (ih', w')] for this oh.
      for iw in 0..<wi {
        for oh2 in 0..<ho {
          // Pointers to the rows, so that the inner loops carry no index arithmetic (vectorised).
          let mS = ms + (iw * pmid + oh2 * wi), mT = mt + (iw * pmid + oh2 * wi)
          for iw2 in 0..<wi { mS[iw2] = 0; mT[iw2] = 0 }
          for a in h.live {
            let ih = h.source(oh, a)
            if ih < 0 { continue }
            for a2 in (pairedTaps ? a ..< a + 1 : h.live) {
              let ih2 = h.source(oh2, a2)
              if ih2 < 0 { continue }
              let src = (ih * wi + iw) * pin + ih2 * wi
              let sS = UnsafePointer(s + src), sT = UnsafePointer(t + src)
              for iw2 in 0..<wi {
                mS[iw2] += sS[iw2]
                mT[iw2] += sT[iw2]
              }
            }
          }
        }
      }
      // Width: out[(oh, ow), (oh', ow')] = Σ_taps m[(iw), (oh', iw')], a row of ow' at a time.
      for ow in 0..<wo {
        for oh2 in 0..<ho {
          let o = (oh * wo + ow) * pout + oh2 * wo
          let dS = outS + o, dT = outT + o
          for ow2 in 0..<wo { dS[ow2] = 0; dT[ow2] = 0 }
          for b in w.live {
            let iw = w.source(ow, b)
            if iw < 0 { continue }
            let e = iw * pmid + oh2 * wi
            for b2 in (pairedTaps ? b ..< b + 1 : w.live) {
              let (lo, hi, offset) = w.contiguous(b2)
              if let offset {
                // Stride 1, no wrap: ow' in lo..<hi reads iw' = ow' + offset.
                let sS = UnsafePointer(ms + (e + offset)), sT = UnsafePointer(mt + (e + offset))
                for ow2 in lo..<max(lo, hi) {
                  dS[ow2] += sS[ow2]
                  dT[ow2] += sT[ow2]
                }
              } else {
                let sS = UnsafePointer(ms + e), sT = UnsafePointer(mt + e)
                for ow2 in 0..<wo {
                  let iw2 = w.source(ow2, b2)
                  if iw2 < 0 { continue }
                  dS[ow2] += sS[iw2]
                  dT[ow2] += sT[iw2]
                }
              }
            }
          }
          if divisor != 1 { for ow2 in 0..<wo { dS[ow2] *= scale; dT[ow2] *= scale } }
          segment(o, oh, ow, oh2)
        }
      }
    }
  }
}

// MARK: - GramKernel conformance

extension Convolutional: GramKernel {
  public typealias Features = ConvFeatures

  public var outputNames: [String] { ["ntk", "nngp"] }

  public func costPerEntry(inputFeatures: Int) -> Double {
    if let slices { return slices.cost(float32: float32Stages) }
    var cost = 0.0
    for (k, op) in spatial.enumerated() {
      let g = grids[k], out = grids[k + 1]
      let pin = Double(g.h * g.w), pout = Double(out.h * out.w)
      switch op {
      case .conv(let h, let w, _):
        // Only the taps that can see the image are computed (`Axis.live`).
        cost += fullSpatial
          ? 2 * (Double(out.h * g.w) * Double(out.h * g.w) * Double(h.live.count) + pout * pout * Double(w.live.count)) + 4 * pout * pout
          : 2 * pout * Double(h.live.count * w.live.count) + 4 * pout
      case .pool(let h, let w, _):
        cost += 2 * (Double(out.h * g.w) * Double(out.h * g.w) * Double(h.live.count * h.live.count) + pout * pout * Double(w.live.count * w.live.count))
      case .activation:
        cost += 70 * (fullSpatial ? pin * pin : pin)
      }
    }
    let p0 = Double(grids[0].h * grids[0].w)
    cost += 2 * Double(inputShape[2]) * (fullSpatial ? p0 * p0 : p0)
    // Operations are not all equal: the windows stream covariances that outgrow the caches
    // (full path) and run in short rows (same-position path). The factors make the cost
    // comparable with the fully-connected kernel's (whose operations run from registers), as
    // measured for five 3×3 layers on 28×28 images (docs/performance.md).
    return cost * (fullSpatial ? 5.5 : 2)
  }

  public func preparedBytesPerSample(inputFeatures: Int) -> Int {
    (inputFeatures + recordCount + 3) * 8 + (computePrecision == .float64 ? 0 : recordCount * 4)
  }

  public func scratchCount(inputFeatures: Int, rows: Int, cols: Int) -> Int { pairScratch }

  /// Doubles of scratch one pair needs.
  var pairScratch: Int { slices?.scratchCount ?? 6 * maxCells }

  public func inputFeatures(_ features: ConvFeatures) -> Int { features.valuesPerSample }

  public func rowCount(_ features: ConvFeatures) -> Int { features.rows }

  public func prepare(_ data: Matrix) -> ConvFeatures {
    let n = data.rows, d = data.cols
    precondition(d == inputShape.reduce(1, *), "Convolutional.prepare: \(d) features for input shape \(inputShape)")
    var values = data.values.map { $0 + 0 }  // folds −0 into +0
    if gramPrecision == .float32 { values = values.map { Double(Float($0)) } }
    var records = [Double](repeating: 0, count: n * recordCount)
    var ntk = [Double](repeating: 0, count: n), nngp = [Double](repeating: 0, count: n)
    var keys = [UInt64](repeating: 0, count: n)
    var scratch = [Double](repeating: 0, count: pairScratch)
    values.withUnsafeBufferPointer { v in
      records.withUnsafeMutableBufferPointer { r in
        scratch.withUnsafeMutableBufferPointer { sp in
          for i in 0..<n {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for k in 0..<d { hash = (hash ^ v[i * d + k].bitPattern) &* 0x0000_0100_0000_01b3 }
            keys[i] = hash
            let q = r.baseAddress.map { $0 + i * recordCount } ?? UnsafeMutablePointer<Double>(bitPattern: 8)!
            (ntk[i], nngp[i]) = pair(v.baseAddress! + i * d, q, v.baseAddress! + i * d, UnsafePointer(q), same: true,
                                     scratch: sp.baseAddress!)
          }
        }
      }
    }
    return ConvFeatures(rows: n, values: values, valuesPerSample: d, records: records,
                        records32: computePrecision == .float64 ? [] : records.map { Float($0) }, recordCount: recordCount,
                        diagonalNTK: ntk, diagonalNNGP: nngp, rowKey: keys)
  }

  public func computeTile(_ a: ConvFeatures, rows: Range<Int>, _ b: ConvFeatures, cols: Range<Int>,
                          into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>) {
    entries(a, rows: rows, b, cols: cols, into: out, scratch: scratch, upper: false)
  }

  public func computeUpperTile(_ a: ConvFeatures, rows: Range<Int>, into out: TileOutput,
                               scratch: UnsafeMutableBufferPointer<Double>) {
    entries(a, rows: rows, a, cols: rows, into: out, scratch: scratch, upper: true)
  }

  func entries(_ a: ConvFeatures, rows: Range<Int>, _ b: ConvFeatures, cols: Range<Int>,
               into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>, upper: Bool) {
    precondition(scratch.count >= pairScratch, "Convolutional: scratch too small")
    let ntkOut = out.values[0], nngpOut = out.values[1], ld = out.leadingDimension
    let d = a.valuesPerSample, rc = recordCount
    a.values.withUnsafeBufferPointer { av in
      b.values.withUnsafeBufferPointer { bv in
        a.records.withUnsafeBufferPointer { ar in
          b.records.withUnsafeBufferPointer { br in
          a.records32.withUnsafeBufferPointer { ar32 in
          b.records32.withUnsafeBufferPointer { br32 in
            for (i, gi) in rows.enumerated() {
              for (j, gj) in cols.enumerated() where !upper || j >= i {
                let e = i * ld + j
                if a.equalRows(gi, b, gj) {
                  ntkOut[e] = a.diagonalNTK[gi]
                  nngpOut[e] = a.diagonalNNGP[gi]
                  continue
                }
                let qx = UnsafeMutablePointer(mutating: ar.baseAddress.map { $0 + gi * rc } ?? UnsafePointer(bitPattern: 8)!)
                let qy = br.baseAddress.map { $0 + gj * rc } ?? UnsafePointer(bitPattern: 8)!
                (ntkOut[e], nngpOut[e]) = pair(av.baseAddress! + gi * d, qx, bv.baseAddress! + gj * d, qy, same: false,
                                                scratch: scratch.baseAddress!,
                                                qx32: ar32.baseAddress.map { $0 + gi * rc }, qy32: br32.baseAddress.map { $0 + gj * rc })
              }
            }
          }
          }
          }
        }
      }
    }
  }

  /// The largest magnitude among a sample's self-pair values and variance maps (the bound of
  /// every covariance a pair with it computes): what a float32 recursion must hold.
  public func largestMagnitude(_ x: [Double]) -> Double? {
    guard x.count == inputShape.reduce(1, *) else { return nil }
    let f = prepare(Matrix(rows: 1, cols: x.count, values: x))
    return (f.records + f.diagonalNTK + f.diagonalNNGP).map { abs($0) }.max()
  }

  public func referenceEntry(_ x: [Double], _ y: [Double]) -> [Double] {
    let r = referenceKernel(x, y)
    return [r.ntk, r.nngp]
  }
}

// MARK: - Scalar reference

extension Convolutional {
  /// The reference of one entry: the recursion written directly on 4-D covariances (every tap
  /// of a window at once, no separable steps, no scratch reuse), self-pairs with the exact
  /// θ = 0 forms. The tile kernel is tested against it; `verify` recomputes entries with it.
  public func referenceKernel(_ x: [Double], _ y: [Double]) -> (nngp: Double, ntk: Double) {
    let same = x == y
    func variances(_ v: [Double]) -> [Double] {
      var record = [Double](repeating: 0, count: recordCount)
      _ = run(v, v, same: true, qx: &record, qy: [])
      return record
    }
    var qx = variances(x)
    let qy = same ? qx : variances(y)
    let (s, t) = run(x, y, same: same, qx: &qx, qy: qy)
    return (s, t)
  }

  /// `(nngp, ntk)` of a pair; with `same`, writes the variances into `qx`.
  private func run(_ x: [Double], _ y: [Double], same: Bool, qx: inout [Double], qy: [Double]) -> (Double, Double) {
    let c = inputShape[2]
    var g = grids[0]
    var p = g.h * g.w
    // S[i·P + j] over pixels i of x and j of y; on the diagonal path S[i] for j == i only.
    let full = fullSpatial
    @inline(__always) func at(_ i: Int, _ j: Int, _ p: Int) -> Int { full ? i * p + j : i }
    @inline(__always) func partners(_ i: Int, _ p: Int) -> Range<Int> { full ? 0..<p : i..<(i + 1) }
    var s = [Double](repeating: 0, count: full ? p * p : p)
    for i in 0..<p {
      for j in partners(i, p) {
        var acc = 0.0
        for k in 0..<c { acc += x[i * c + k] * y[j * c + k] }
        s[at(i, j, p)] = acc / Double(c)
      }
    }
    var t = [Double](repeating: 0, count: s.count)
    for (index, op) in spatial.enumerated() {
      let out = grids[index + 1]
      let po = out.h * out.w
      var ns = [Double](repeating: 0, count: full ? po * po : po), nt = ns
      /// taps[o]: the input pixel of every tap (a, b) of output pixel o, −1 in the padding.
      func taps(_ h: Axis, _ w: Axis) -> [[Int]] {
        (0..<po).map { o in
          h.live.flatMap { a in
            w.live.map { b in
              let ih = h.source(o / out.w, a), iw = w.source(o % out.w, b)
              return ih < 0 || iw < 0 ? -1 : ih * g.w + iw
            }
          }
        }
      }
      switch op {
      case .conv(let h, let w, let weights):
        // Shared weights: tap k of pixel i meets tap k of pixel j.
        let tap = taps(h, w)
        let f = Double(h.window * w.window)
        for i in 0..<po {
          for j in partners(i, po) {
            var accS = 0.0, accT = 0.0
            for k in 0..<tap[i].count {
              let (u, v) = (tap[i][k], tap[j][k])
              if u < 0 || v < 0 { continue }
              accS += s[at(u, v, p)]
              accT += t[at(u, v, p)]
            }
            (ns[at(i, j, po)], nt[at(i, j, po)]) = weights.apply(accS / f, accT / f)
          }
        }
      case .pool(let h, let w, let divisors):
        // Every tap of pixel i with every tap of pixel j: Σ_u Σ_v over the taps inside the
        // input, each inner sum (over j's taps, for one u) made once and used for every i — a
        // SAME window far wider than its input has many taps, most of them in the padding.
        let inside = taps(h, w).map { $0.filter { $0 >= 0 } }
        var rowS = [Double](repeating: 0, count: p), rowT = rowS
        for j in 0..<po {
          for u in 0..<p {
            var a = 0.0, b = 0.0
            for v in inside[j] {
              a += s[u * p + v]
              b += t[u * p + v]
            }
            (rowS[u], rowT[u]) = (a, b)
          }
          for i in 0..<po {
            var accS = 0.0, accT = 0.0
            for u in inside[i] {
              accS += rowS[u]
              accT += rowT[u]
            }
            let d = 1 / (divisors[i] * divisors[j])
            ns[i * po + j] = accS * d
            nt[i * po + j] = accT * d
          }
        }
      case .activation(let map, let record):
        if same { for i in 0..<p { qx[record + i] = s[at(i, i, p)] } }
        let q2 = same ? qx : qy
        for i in 0..<p {
          for j in partners(i, p) {
            let e = at(i, j, p)
            let (sa, dot) = same && i == j ? map.diagonal(s[e]) : map.pair(s[e], qx[record + i], q2[record + j])
            ns[e] = sa
            nt[e] = t[e] * dot
          }
        }
      }
      s = ns
      t = nt
      g = out
      p = g.h * g.w
    }
    var sv = 0.0, tv = 0.0
    switch collapse {
    case .flatten:
      for i in 0..<p { sv += s[at(i, i, p)]; tv += t[at(i, i, p)] }
      sv /= Double(p); tv /= Double(p)
    case .globalAvgPool:
      for i in 0..<p { for j in 0..<p { sv += s[i * p + j]; tv += t[i * p + j] } }
      sv /= Double(p * p); tv /= Double(p * p)
    }
    var recorded = qx
    (sv, tv) = applyTail(sv, tv, same: same, qx: { recorded[$0] }, qy: { qy[$0] }, record: { recorded[$0] = $1 })
    qx = recorded
    return (sv, tv)
  }
}
