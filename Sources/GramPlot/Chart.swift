import Foundation

/// How an axis maps values to positions.
public enum AxisScale: Sendable { case linear, log }

/// One curve: points joined by a line, each marked by a dot.
public struct Series: Sendable {
  public var name: String
  public var points: [(x: Double, y: Double)]
  public var colour: Colour
  public init(name: String, points: [(x: Double, y: Double)], colour: Colour) { (self.name, self.points, self.colour) = (name, points, colour) }
}

/// A horizontal dashed line across the whole chart (a limit such as the value at t = ∞).
/// A level a log axis cannot show (≤ 0) is named in the legend only.
public struct Level: Sendable {
  public var name: String
  public var y: Double
  public var colour: Colour
  public init(name: String, y: Double, colour: Colour) { (self.name, self.y, self.colour) = (name, y, colour) }
}

/// A line chart: axes with ticks and labels, a light grid, curves, levels and a legend.
public struct Chart: Sendable {
  public var title = "", xLabel = "", yLabel = ""
  public var xScale = AxisScale.linear, yScale = AxisScale.linear
  public var series: [Series] = []
  public var levels: [Level] = []
  /// Text scale: each font pixel is `textScale × textScale` pixels.
  public var textScale = 2
  public init() {}

  /// The values an axis can show: finite, and positive on a log axis.
  static func drawable(_ v: Double, _ scale: AxisScale) -> Bool { v.isFinite && (scale == .linear || v > 0) }

  /// Draws the chart into the rectangle at (left, top) of `width × height` pixels of `image`.
  public func draw(on image: inout Raster, left: Int, top: Int, width: Int, height: Int) {
    let s = textScale, lineHeight = BitmapFont.glyphHeight * s
    let xs = series.flatMap { $0.points.map(\.x) }.filter { Self.drawable($0, xScale) }
    let ys = series.flatMap { $0.points.filter { Self.drawable($0.x, xScale) }.map(\.y) }.filter { Self.drawable($0, yScale) }
      + levels.map(\.y).filter { Self.drawable($0, yScale) }
    let xAxis = Axis(values: xs, scale: xScale), yAxis = Axis(values: ys, scale: yScale)
    let yTickLabels = yAxis.ticks.map { yAxis.label($0) }
    let leftMargin = lineHeight + s * 8 + (yTickLabels.map { Raster.textWidth($0, scale: s) }.max() ?? 0) + s * 4
    let plot = (x0: left + leftMargin, y0: top + (title.isEmpty ? s * 4 : lineHeight + s * 6),
                x1: left + width - s * 6, y1: top + height - 2 * lineHeight - s * 8)
    guard plot.x1 - plot.x0 > 20, plot.y1 - plot.y0 > 20 else { return }
    func px(_ x: Double) -> Double { Double(plot.x0) + xAxis.position(x) * Double(plot.x1 - plot.x0) }
    func py(_ y: Double) -> Double { Double(plot.y1) - yAxis.position(y) * Double(plot.y1 - plot.y0) }

    if !title.isEmpty {
      image.text(title, x: left + (width - Raster.textWidth(title, scale: s)) / 2, y: top + s * 2, scale: s)
    }
    // Grid and ticks.
    for t in xAxis.ticks {
      let x = px(t).rounded()
      image.line(x, Double(plot.y0), x, Double(plot.y1), .lightGrey, thickness: 1)
      image.line(x, Double(plot.y1), x, Double(plot.y1) + Double(3 * s), .black, thickness: 1)
      let label = xAxis.label(t)
      image.text(label, x: Int(x) - Raster.textWidth(label, scale: s) / 2, y: plot.y1 + 5 * s, scale: s)
    }
    for (t, label) in zip(yAxis.ticks, yTickLabels) {
      let y = py(t).rounded()
      image.line(Double(plot.x0), y, Double(plot.x1), y, .lightGrey, thickness: 1)
      image.line(Double(plot.x0) - Double(3 * s), y, Double(plot.x0), y, .black, thickness: 1)
      image.text(label, x: plot.x0 - 5 * s - Raster.textWidth(label, scale: s), y: Int(y) - 7 * s / 2, scale: s)
    }
    // Frame and axis labels.
    for (a, b, c, d) in [(plot.x0, plot.y0, plot.x1, plot.y0), (plot.x0, plot.y1, plot.x1, plot.y1),
                         (plot.x0, plot.y0, plot.x0, plot.y1), (plot.x1, plot.y0, plot.x1, plot.y1)] {
      image.line(Double(a), Double(b), Double(c), Double(d), .black, thickness: 1)
    }
    // Axis labels at the text scale when they fit along their axis, else at scale 1.
    let xs1 = Raster.textWidth(xLabel, scale: s) <= plot.x1 - plot.x0 ? s : 1
    image.text(xLabel, x: (plot.x0 + plot.x1 - Raster.textWidth(xLabel, scale: xs1)) / 2, y: plot.y1 + 5 * s + lineHeight + 2 * s, scale: xs1)
    let ys1 = Raster.textWidth(yLabel, scale: s) <= plot.y1 - plot.y0 ? s : 1
    image.text(yLabel, x: left + s, y: (plot.y0 + plot.y1 + Raster.textWidth(yLabel, scale: ys1)) / 2, scale: ys1, vertical: true)

    // Data, clipped to the plot area by construction of the axes (levels span it).
    for level in levels where Self.drawable(level.y, yScale) {
      let y = py(level.y)
      image.line(Double(plot.x0), y, Double(plot.x1), y, level.colour, thickness: 1.5, dash: (on: Double(4 * s), off: Double(3 * s)))
    }
    for curve in series {
      let points = curve.points.filter { Self.drawable($0.x, xScale) && Self.drawable($0.y, yScale) }.map { (px($0.x), py($0.y)) }
      image.polyline(points, curve.colour, thickness: Double(s))
      for (x, y) in points { image.disc(x, y, radius: 1.5 * Double(s), curve.colour) }
    }
    drawLegend(on: &image, plot: plot, px: px, py: py)
  }

  /// The legend in the plot corner that covers the fewest points.
  func drawLegend(on image: inout Raster, plot: (x0: Int, y0: Int, x1: Int, y1: Int), px: (Double) -> Double, py: (Double) -> Double) {
    let entries: [(String, Colour, Bool)] = series.map { ($0.name, $0.colour, false) } + levels.map { ($0.name, $0.colour, true) }
    guard !entries.isEmpty else { return }
    // The text scale, or 1 when the legend would take more than 60% of the plot's width or height.
    func size(_ s: Int) -> (width: Int, height: Int) {
      (8 * s + 7 * s + (entries.map { Raster.textWidth($0.0, scale: s) }.max() ?? 0), (BitmapFont.glyphHeight * s + 2 * s) * entries.count + 2 * s)
    }
    let fits = { (s: Int) in 10 * size(s).width <= 6 * (plot.x1 - plot.x0) && 10 * size(s).height <= 6 * (plot.y1 - plot.y0) }
    let s = fits(textScale) ? textScale : 1
    let rowHeight = BitmapFont.glyphHeight * s + 2 * s, swatch = 8 * s
    let (boxWidth, boxHeight) = size(s)
    let inset = 4 * s
    let corners = [(plot.x1 - inset - boxWidth, plot.y0 + inset), (plot.x1 - inset - boxWidth, plot.y1 - inset - boxHeight),
                   (plot.x0 + inset, plot.y0 + inset), (plot.x0 + inset, plot.y1 - inset - boxHeight)]
    let drawn = series.flatMap { $0.points.filter { Self.drawable($0.x, xScale) && Self.drawable($0.y, yScale) }.map { (px($0.x), py($0.y)) } }
    func covered(_ c: (Int, Int)) -> Int {
      drawn.filter { $0.0 >= Double(c.0) && $0.0 <= Double(c.0 + boxWidth) && $0.1 >= Double(c.1) && $0.1 <= Double(c.1 + boxHeight) }.count
    }
    let corner = corners.min { covered($0) < covered($1) }!
    image.fill(x0: corner.0, y0: corner.1, x1: corner.0 + boxWidth, y1: corner.1 + boxHeight, .white)
    for (a, b, c, d) in [(0, 0, boxWidth, 0), (0, boxHeight, boxWidth, boxHeight), (0, 0, 0, boxHeight), (boxWidth, 0, boxWidth, boxHeight)] {
      image.line(Double(corner.0 + a), Double(corner.1 + b), Double(corner.0 + c), Double(corner.1 + d), .grey, thickness: 1)
    }
    for (k, (name, colour, dashed)) in entries.enumerated() {
      let y = corner.1 + s + k * rowHeight
      let mid = Double(y + 7 * s / 2)
      image.line(Double(corner.0 + 2 * s), mid, Double(corner.0 + 2 * s + swatch), mid, colour, thickness: Double(s),
                 dash: dashed ? (on: Double(3 * s), off: Double(2 * s)) : nil)
      image.text(name, x: corner.0 + 5 * s + swatch, y: y + s, scale: s)
    }
  }
}

/// An axis's range and ticks: for a linear axis, 1-2-5 steps around the data; for a log axis,
/// whole decades (every k-th when there are many), or 1-2-5 multiples within a short range.
struct Axis {
  let scale: AxisScale
  /// The range shown, in the axis's own coordinate (log10 of the value on a log axis).
  let low: Double, high: Double
  let ticks: [Double]
  let decimals: Int

  init(values: [Double], scale: AxisScale) {
    self.scale = scale
    let mapped = values.map { scale == .log ? log10($0) : $0 }
    // Values whose spread overflows (±1e308) are drawn on the widest range that does not.
    var lo = max(mapped.min() ?? 0, -1e300), hi = min(mapped.max() ?? 1, 1e300)
    if hi - lo < 1e-12 * max(1, abs(hi)) { (lo, hi) = scale == .log ? (lo - 0.5, hi + 0.5) : (lo - max(0.5, abs(lo) * 0.1), hi + max(0.5, abs(hi) * 0.1)) }
    let pad = (hi - lo) * 0.04
    (low, high) = (lo - pad, hi + pad)
    if scale == .log && high - low >= 1 {
      let decades = Array(Int(low.rounded(.up))...max(Int(low.rounded(.up)), Int(high.rounded(.down))))
      let every = max(1, Int((Double(decades.count) / 7).rounded(.up)))
      ticks = decades.filter { $0 % every == 0 }.map { pow(10, Double($0)) }
      decimals = 0
    } else {
      // Steps of 1, 2 or 5 × 10^k giving 4 to 8 ticks, in value space (a log axis of less than a decade too).
      let (vLow, vHigh) = scale == .log ? (pow(10, low), pow(10, high)) : (low, high)
      let raw = (vHigh - vLow) / 6
      let magnitude = pow(10, floor(log10(raw)))
      let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
      let first = (vLow / step).rounded(.up)
      ticks = stride(from: first, through: (vHigh / step).rounded(.down), by: 1).map { $0 * step }
      decimals = max(0, -Int(floor(log10(step) + 1e-9)))
    }
  }

  /// Where `v` sits, 0 at the low end and 1 at the high end.
  func position(_ v: Double) -> Double { ((scale == .log ? log10(v) : v) - low) / (high - low) }

  /// A tick's label: decades as 0.01 … 1000 and 1e-5, 1e4 beyond; other ticks to the step's decimals.
  func label(_ v: Double) -> String {
    if scale == .log && decimals == 0 && high - low >= 1 {
      let k = Int(log10(v).rounded())
      return (-2...3).contains(k) ? String(format: k < 0 ? "%.\(-k)f" : "%.0f", v) : "1e\(k)"
    }
    return String(format: "%.\(decimals)f", v)
  }
}
