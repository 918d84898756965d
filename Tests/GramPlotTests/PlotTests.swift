import CZlib
import Testing
@testable import GramPlot

/// Splits a PNG into its chunks, checking the signature, each length and each CRC-32.
func chunks(_ png: [UInt8]) -> [(type: String, data: [UInt8])]? {
  guard png.count >= 8, Array(png[0..<8]) == PNG.signature else { return nil }
  var out: [(String, [UInt8])] = [], i = 8
  func u32(_ at: Int) -> Int { png[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
  while i + 12 <= png.count {
    let length = u32(i)
    guard i + 12 + length <= png.count else { return nil }
    let body = Array(png[(i + 4)..<(i + 8 + length)])
    let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
    guard UInt32(crc) == UInt32(u32(i + 8 + length)) else { return nil }
    out.append((String(decoding: body[0..<4], as: UTF8.self), Array(body[4...])))
    i += 12 + length
  }
  return i == png.count ? out : nil
}

/// Decodes an 8-bit RGB PNG written with filters None and Up back to its pixels.
func decodedPixels(_ png: [UInt8], width: Int, height: Int) -> [UInt8]? {
  guard let parts = chunks(png) else { return nil }
  let idat = parts.filter { $0.type == "IDAT" }.flatMap(\.data)
  var size = uLong((width * 3 + 1) * height)
  var raw = [UInt8](repeating: 0, count: Int(size))
  let status = idat.withUnsafeBufferPointer { src in raw.withUnsafeMutableBufferPointer { uncompress($0.baseAddress, &size, src.baseAddress, uLong(idat.count)) } }
  guard status == Z_OK, Int(size) == raw.count else { return nil }
  var pixels: [UInt8] = [], stride = width * 3
  for y in 0..<height {
    let filter = raw[y * (stride + 1)]
    for x in 0..<stride {
      let v = raw[y * (stride + 1) + 1 + x]
      switch filter {
      case 0: pixels.append(v)
      case 2: pixels.append(v &+ (y == 0 ? 0 : pixels[(y - 1) * stride + x]))
      default: return nil
      }
    }
  }
  return pixels
}

@Suite("PNG encoding, the bitmap font and charts")
struct PlotTests {
  @Test("a PNG has the signature, IHDR of the raster's size, valid CRCs, and decodes to the raster's pixels", arguments: [(1, 1), (3, 2), (97, 41)])
  func pngRoundTrip(width: Int, height: Int) throws {
    var image = Raster(width: width, height: height)
    for y in 0..<height { for x in 0..<width { image.blend(x: x, y: y, Colour(UInt8(x * 37 % 256), UInt8(y * 91 % 256), UInt8((x ^ y) % 256))) } }
    let png = PNG.encode(image)
    let parts = try #require(chunks(png))
    #expect(parts.map(\.type) == ["IHDR", "IDAT", "IEND"])
    #expect(parts[0].data == [0, 0, 0, UInt8(width)] + [0, 0, 0, UInt8(height)] + [8, 2, 0, 0, 0])
    #expect(decodedPixels(png, width: width, height: height) == image.pixels)
  }

  @Test("a damaged byte fails the CRC check the test decoder makes (so the check can fail)")
  func damagedPNG() {
    var png = PNG.encode(Raster(width: 4, height: 4))
    png[20] ^= 1
    #expect(chunks(png) == nil)
  }

  @Test("every glyph is 5 pixels wide and 7 or 9 rows high; letters, digits and punctuation differ")
  func glyphs() {
    for (c, spec) in BitmapFont.glyphs {
      let rows = spec.split(separator: " ")
      #expect(rows.count == 7 || rows.count == 9, "glyph \(c)")
      #expect(rows.allSatisfy { $0.count == 5 && $0.allSatisfy { "#.".contains($0) } }, "glyph \(c)")
    }
    let printable = (32...126).map { Character(UnicodeScalar(UInt8($0))) }
    #expect(printable.allSatisfy { BitmapFont.glyphs[$0] != nil })
    #expect(Set(BitmapFont.glyphs.values).count == BitmapFont.glyphs.count)
  }

  @Test("text is drawn in ink inside its box and nowhere else")
  func text() {
    var image = Raster(width: 80, height: 30)
    image.text("Ag0", x: 10, y: 5, scale: 2)
    var inked: [(Int, Int)] = []
    for y in 0..<30 { for x in 0..<80 where image.colour(x: x, y: y) != .white { inked.append((x, y)) } }
    #expect(!inked.isEmpty)
    #expect(inked.allSatisfy { $0.0 >= 10 && $0.0 < 10 + Raster.textWidth("Ag0", scale: 2) && $0.1 >= 5 && $0.1 < 5 + 18 })
    #expect(inked.contains { $0.1 >= 5 + 14 })  // the descender of g
  }

  @Test("linear axes tick in 1-2-5 steps inside the range; log axes at decades, or 1-2-5 steps within one")
  func axes() {
    let linear = Axis(values: [0.1, 0.87], scale: .linear)
    #expect(linear.ticks.count >= 4 && linear.ticks.count <= 8)
    #expect(linear.ticks.allSatisfy { linear.position($0) >= 0 && linear.position($0) <= 1 })
    #expect(linear.ticks.map { linear.label($0) } == ["0.2", "0.4", "0.6", "0.8"])
    let log = Axis(values: [1, 1e8], scale: .log)
    #expect(log.ticks.count >= 3 && log.ticks.count <= 9)
    #expect(log.ticks.map { log.label($0) }.contains("1e6") || log.ticks.map { log.label($0) }.contains("1e4"))
    let short = Axis(values: [0.031, 0.048], scale: .log)
    #expect(short.ticks.count >= 3)
    #expect(short.ticks.allSatisfy { short.position($0) >= 0 && short.position($0) <= 1 })
    let flat = Axis(values: [0.5, 0.5], scale: .linear)
    #expect(flat.low < 0.5 && flat.high > 0.5 && !flat.ticks.isEmpty)
  }

  @Test("a chart draws its curve's colour, its level dashed, and skips what a log axis cannot show")
  func chart() {
    var chart = Chart()
    chart.xScale = .log
    chart.yScale = .log
    chart.series = [Series(name: "test", points: [(1, 0.5), (10, 0.1), (100, 0.05), (0, 1), (1000, .nan)], colour: Colour.palette[1])]
    chart.levels = [Level(name: "t = inf", y: 0.04, colour: Colour.palette[2]), Level(name: "never", y: 0, colour: Colour.palette[3])]
    var image = Raster(width: 600, height: 400)
    chart.draw(on: &image, left: 0, top: 0, width: 600, height: 400)
    func count(_ c: Colour) -> Int { (0..<400).reduce(0) { n, y in n + (0..<600).filter { image.colour(x: $0, y: y) == c }.count } }
    #expect(count(Colour.palette[1]) > 200)
    #expect(count(Colour.palette[2]) > 100)
    #expect(count(Colour.palette[3]) > 5 && count(Colour.palette[3]) < 100)  // only its legend swatch
  }
}
