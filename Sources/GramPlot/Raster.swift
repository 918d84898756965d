/// An RGB colour, 8 bits per channel.
public struct Colour: Equatable, Sendable {
  public var r: UInt8, g: UInt8, b: UInt8
  public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { (self.r, self.g, self.b) = (r, g, b) }

  public static let white = Colour(255, 255, 255)
  public static let black = Colour(0, 0, 0)
  public static let grey = Colour(110, 110, 110)
  public static let lightGrey = Colour(225, 225, 225)
  /// matplotlib's first colours (tab10), so plots look like `ntkgram-plot`'s.
  public static let palette = [Colour(31, 119, 180), Colour(255, 127, 14), Colour(44, 160, 44), Colour(214, 39, 40),
                               Colour(148, 103, 189), Colour(140, 86, 75), Colour(227, 119, 194), Colour(127, 127, 127)]
}

/// A picture in memory: `width × height` RGB pixels, row-major from the top left, with the few
/// drawing operations charts need (antialiased lines, rectangles, text). Drawing outside is clipped.
public struct Raster: Sendable {
  public let width: Int, height: Int
  /// `width · height · 3` bytes, R G B per pixel.
  public private(set) var pixels: [UInt8]

  public init(width: Int, height: Int, background: Colour = .white) {
    precondition(width > 0 && height > 0, "Raster: empty size")
    (self.width, self.height) = (width, height)
    pixels = [UInt8](repeating: 0, count: width * height * 3)
    for i in 0..<(width * height) { pixels[3 * i] = background.r; pixels[3 * i + 1] = background.g; pixels[3 * i + 2] = background.b }
  }

  /// The colour at (x, y).
  public func colour(x: Int, y: Int) -> Colour {
    let i = 3 * (y * width + x)
    return Colour(pixels[i], pixels[i + 1], pixels[i + 2])
  }

  /// Mixes `c` into pixel (x, y) with weight `alpha` in [0, 1].
  public mutating func blend(x: Int, y: Int, _ c: Colour, alpha: Double = 1) {
    guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
    let a = min(alpha, 1), i = 3 * (y * width + x)
    func mix(_ old: UInt8, _ new: UInt8) -> UInt8 { UInt8((Double(old) * (1 - a) + Double(new) * a).rounded()) }
    pixels[i] = mix(pixels[i], c.r); pixels[i + 1] = mix(pixels[i + 1], c.g); pixels[i + 2] = mix(pixels[i + 2], c.b)
  }

  /// Fills the rectangle [x0, x1) × [y0, y1).
  public mutating func fill(x0: Int, y0: Int, x1: Int, y1: Int, _ c: Colour) {
    for y in max(0, y0)..<max(max(0, y0), min(height, y1)) {
      for x in max(0, x0)..<max(max(0, x0), min(width, x1)) { blend(x: x, y: y, c) }
    }
  }

  /// A line of `thickness` pixels from (x0, y0) to (x1, y1) (pixel centres at integers + 0.5),
  /// antialiased by the distance of each pixel centre to the segment; `dash` (on, off) in pixels.
  public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Colour, thickness: Double = 1.5,
                            dash: (on: Double, off: Double)? = nil) {
    guard [x0, y0, x1, y1].allSatisfy(\.isFinite) else { return }
    // Far outside the picture only the direction matters: clip to a box around it (also keeps Int() in range).
    if [x0, y0, x1, y1].contains(where: { abs($0) > Self.reach }) {
      guard let (a, b) = clip(x0, y0, x1, y1) else { return }
      return line(a.0, a.1, b.0, b.1, c, thickness: thickness, dash: dash)
    }
    let (dx, dy) = (x1 - x0, y1 - y0), length2 = dx * dx + dy * dy, half = thickness / 2
    let pad = half + 1
    let (xa, xb) = (Int((min(x0, x1) - pad).rounded(.down)), Int((max(x0, x1) + pad).rounded(.up)))
    let (ya, yb) = (Int((min(y0, y1) - pad).rounded(.down)), Int((max(y0, y1) + pad).rounded(.up)))
    for y in max(0, ya)...max(max(0, ya), min(height - 1, yb)) where y < height {
      for x in max(0, xa)...max(max(0, xa), min(width - 1, xb)) where x < width {
        let (px, py) = (Double(x) + 0.5, Double(y) + 0.5)
        let t = length2 == 0 ? 0 : max(0, min(1, ((px - x0) * dx + (py - y0) * dy) / length2))
        let (qx, qy) = (x0 + t * dx - px, y0 + t * dy - py)
        let distance = (qx * qx + qy * qy).squareRoot()
        guard distance < half + 0.5 else { continue }
        if let dash, (t * length2.squareRoot()).truncatingRemainder(dividingBy: dash.on + dash.off) >= dash.on { continue }
        blend(x: x, y: y, c, alpha: min(1, half + 0.5 - distance))
      }
    }
  }

  /// Coordinates beyond this distance from the origin are clipped before drawing.
  static let reach = 1e6

  /// The part of the segment inside the square of half-side `reach` (Liang–Barsky), nil if none.
  func clip(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double) -> ((Double, Double), (Double, Double))? {
    let r = Self.reach * 0.99, (dx, dy) = (x1 - x0, y1 - y0)
    guard dx.isFinite, dy.isFinite else { return nil }
    var (t0, t1) = (0.0, 1.0)
    for (p, q) in [(-dx, x0 + r), (dx, r - x0), (-dy, y0 + r), (dy, r - y0)] {
      if p == 0 { if q < 0 { return nil } else { continue } }
      let t = q / p
      if p < 0 { t0 = max(t0, t) } else { t1 = min(t1, t) }
      if t0 > t1 { return nil }
    }
    return ((x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy))
  }

  /// A polyline through `points` (consecutive pairs joined).
  public mutating func polyline(_ points: [(Double, Double)], _ c: Colour, thickness: Double = 1.5) {
    for (a, b) in zip(points, points.dropFirst()) { line(a.0, a.1, b.0, b.1, c, thickness: thickness) }
  }

  /// A filled disc of `radius` centred at (cx, cy), antialiased at its edge.
  public mutating func disc(_ cx: Double, _ cy: Double, radius: Double, _ c: Colour) {
    guard cx.isFinite, cy.isFinite, abs(cx) < Self.reach, abs(cy) < Self.reach, radius.isFinite, radius < Self.reach else { return }
    for y in Int((cy - radius - 1).rounded(.down))...Int((cy + radius + 1).rounded(.up)) {
      for x in Int((cx - radius - 1).rounded(.down))...Int((cx + radius + 1).rounded(.up)) {
        let d = ((Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx) + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy)).squareRoot()
        if d < radius + 0.5 { blend(x: x, y: y, c, alpha: min(1, radius + 0.5 - d)) }
      }
    }
  }

  /// Text in `BitmapFont` at `scale`, its top-left corner at (x, y); `vertical` turns it a
  /// quarter counter-clockwise (reading upwards, (x, y) then its bottom-left corner).
  public mutating func text(_ s: String, x: Int, y: Int, scale: Int = 1, _ c: Colour = .black, vertical: Bool = false) {
    for (k, ch) in s.enumerated() {
      for gy in 0..<BitmapFont.glyphHeight {
        for gx in 0..<BitmapFont.glyphWidth where BitmapFont.ink(ch, x: gx, y: gy) {
          let (u, v) = (k * BitmapFont.advance + gx, gy)  // font pixel along and across the text
          for sy in 0..<scale {
            for sx in 0..<scale {
              if vertical { blend(x: x + v * scale + sy, y: y - u * scale - sx, c) } else { blend(x: x + u * scale + sx, y: y + v * scale + sy, c) }
            }
          }
        }
      }
    }
  }

  /// Width in pixels of `s` drawn at `scale`.
  public static func textWidth(_ s: String, scale: Int = 1) -> Int { BitmapFont.width(s) * scale }
}
