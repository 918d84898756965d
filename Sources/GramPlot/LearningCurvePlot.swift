import Foundation
import GramStorage

/// `ntkgram plot`: the learning curves of a file written by `ntkgram dynamics` — loss and
/// accuracy of the training and test sets against training time (log axis), one colour per set
/// and ridge value, the t = ∞ values as dashed levels — drawn as one PNG (`Chart`, `PNG`).
public struct LearningCurvePlot {
  public let dynamicsFile: String
  public let out: String
  public let force: Bool
  /// Picture size in pixels.
  public var width = 1400, height = 560

  public init(dynamicsFile: String, out: String, force: Bool) { (self.dynamicsFile, self.out, self.force) = (dynamicsFile, out, force) }

  /// The files `plot` reads and writes, checked together before any work (`CommandPaths`): the
  /// picture is not the input, exists only with `force`, and is a regular file or absent.
  public var paths: CommandPaths {
    CommandPaths(inputs: [(dynamicsFile, "the dynamics file")], outputs: [PlannedOutput(out, "the picture")], force: force)
  }

  /// The checks made before any work: `paths`, and the output's folder exists.
  public func checkPaths() throws {
    try paths.check()
    var isDirectory: ObjCBool = false
    let folder = URL(fileURLWithPath: out).deletingLastPathComponent().path
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw StorageError(out, "output folder \(folder) does not exist")
    }
  }

  /// Checks the paths, reads the curves, draws and writes the PNG; returns its size in bytes.
  @discardableResult
  public func run() throws -> Int {
    try checkPaths()
    let curves = try LearningCurves(path: dynamicsFile)
    let png = PNG.encode(render(curves))
    try writeOutputFile(png, to: out, what: "the picture")
    return png.count
  }

  /// Two panels side by side (loss on a log axis, then accuracy when the file has it) under a title.
  public func render(_ c: LearningCurves) -> Raster {
    var image = Raster(width: width, height: height)
    let scale = 2
    let title = "gradient-descent dynamics of the \(c.kernel.uppercased()) (\(c.trainCount) training samples)"
    image.text(title, x: (width - Raster.textWidth(title, scale: scale)) / 2, y: 4 * scale, scale: scale)
    let panels = ["loss", "accuracy"].filter { m in c.metrics.keys.contains { $0.metric == m } }
    let top = BitmapFont.glyphHeight * scale + 8 * scale
    let panelWidth = width / max(1, panels.count)
    for (k, metric) in panels.enumerated() {
      var chart = Chart()
      chart.xScale = .log
      chart.yScale = metric == "loss" ? .log : .linear
      chart.xLabel = "training time t (learning rate \(Self.format(c.learningRate)))"
      chart.yLabel = metric == "loss" ? "loss 1/2 |f - y|^2 / (N C)" : "accuracy"
      (chart.series, chart.levels) = lines(c, metric: metric, logAxis: chart.yScale == .log)
      chart.draw(on: &image, left: k * panelWidth, top: top, width: panelWidth, height: height - top)
    }
    return image
  }

  /// The curves of one metric: per set (train, test) and ridge value, the finite positive
  /// times as a line, t = ∞ as a level (legend only when a log axis cannot show it well).
  func lines(_ c: LearningCurves, metric: String, logAxis: Bool) -> ([Series], [Level]) {
    var series: [Series] = [], levels: [Level] = []
    let drawnTimes = c.times.indices.filter { c.times[$0].isFinite && c.times[$0] > 0 }
    for (r, ridge) in c.ridges.enumerated() {
      for (s, side) in ["train", "test"].enumerated() {
        guard let values = c.metrics[.init(side: side, metric: metric)]?[r] else { continue }
        let colour = Colour.palette[(2 * r + s) % Colour.palette.count]
        let name = side + (c.ridges.count > 1 || ridge != 0 ? ", ridge \(Self.format(ridge))" : "")
        let points = drawnTimes.map { (x: c.times[$0], y: values[$0]) }
        series.append(Series(name: name, points: points, colour: colour))
        if let last = c.times.indices.last, c.times[last].isInfinite {
          let level = values[last]
          let smallest = points.map(\.y).filter { $0 > 0 }.min() ?? level
          if logAxis && !(level >= 1e-3 * smallest) {
            levels.append(Level(name: "\(name), t = inf: \(Self.format(level, digits: 2))", y: .nan, colour: colour))
          } else {
            levels.append(Level(name: "\(name), t = inf", y: level, colour: colour))
          }
        }
      }
    }
    return (series, levels)
  }

  /// A number in few characters (`digits` significant): 1, 0.001, 1e-06 → 1e-6.
  static func format(_ v: Double, digits: Int = 6) -> String {
    String(format: "%.\(digits)g", v).replacingOccurrences(of: "e-0", with: "e-").replacingOccurrences(of: "e+0", with: "e").replacingOccurrences(of: "e+", with: "e")
  }
}

/// What a dynamics file holds for its learning curves (`docs/file-format.md`, `/dynamics/*`).
public struct LearningCurves {
  public struct Key: Hashable { public let side: String, metric: String }
  public let times: [Double]
  public let ridges: [Double]
  /// (side, metric) → per ridge value, one value per time.
  public let metrics: [Key: [[Double]]]
  public let kernel: String
  public let learningRate: Double
  public let trainCount: Int

  /// Reads and checks the curves of a dynamics file: one line naming it for anything missing or malformed.
  public init(path: String) throws {
    let f = try H5File.open(path)
    guard f.exists("/dynamics/times"), f.exists("/dynamics/ridges"), f.exists("/dynamics/train/loss") else {
      throw StorageError(path, "has no /dynamics/times, /dynamics/ridges and /dynamics/train/loss (not a file written by `ntkgram dynamics`)")
    }
    func vector(_ name: String) throws -> [Double] {
      let d = try f.dataset(name)
      guard d.shape.count == 1, d.shape[0] >= 1 else { throw StorageError(path, "\(name) has shape \(d.shape), expected one non-empty axis") }
      return try d.readAll()
    }
    times = try vector("/dynamics/times")
    ridges = try vector("/dynamics/ridges")
    guard times.contains(where: { $0.isFinite && $0 > 0 }) else {
      throw StorageError(path, "has no finite training time > 0 to draw on a log axis (run dynamics with such --times, e.g. log:1:1e4:20)")
    }
    var metrics: [Key: [[Double]]] = [:]
    let (times, ridges) = (self.times, self.ridges)
    for side in ["train", "test"] {
      for metric in ["loss", "accuracy"] {
        let name = "/dynamics/\(side)/\(metric)"
        guard f.exists(name) else { continue }
        let d = try f.dataset(name)
        let expected = ridges.count == 1 ? [times.count] : [ridges.count, times.count]
        guard d.shape == expected else {
          throw StorageError(path, "\(name) has shape \(d.shape), expected \(expected) (ridge values × times)")
        }
        let values = try d.readAll()
        metrics[Key(side: side, metric: metric)] = (0..<ridges.count).map { Array(values[($0 * times.count)..<(($0 + 1) * times.count)]) }
      }
    }
    self.metrics = metrics
    if case .string(let k)? = try f.attribute("kernel") { kernel = k } else { kernel = "ntk" }
    if case .double(let v)? = try f.attribute("learning_rate") { learningRate = v } else { learningRate = 1 }
    let predictions = f.exists("/dynamics/train/predictions") ? try f.dataset("/dynamics/train/predictions").shape : []
    trainCount = predictions.count >= 2 ? predictions[predictions.count - 2] : 0
  }
}
