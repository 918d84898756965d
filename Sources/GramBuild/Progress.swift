import Foundation

/// How rank 0 reports a build: a live bar on a terminal, plain periodic lines otherwise,
/// nothing with `quiet`; and, with `jsonLog`, one JSON object per event in that file.
public struct ProgressOptions: Sendable {
  public var quiet: Bool
  public var jsonLog: String?
  /// Seconds between plain lines when stderr is not a terminal.
  public var plainInterval: Double

  public init(quiet: Bool = false, jsonLog: String? = nil, plainInterval: Double = 10) {
    self.quiet = quiet
    self.jsonLog = jsonLog
    self.plainInterval = plainInterval
  }
}

/// Writes progress and events (rank 0 only: other ranks get a reporter that does nothing).
final class ProgressReporter {
  private let options: ProgressOptions
  private let enabled: Bool
  private let isTerminal: Bool
  private let log: FileHandle?
  private let start = Date()
  private var lastDraw = Date.distantPast
  private var drewBar = false
  private var baselineEntries = 0.0

  init(options: ProgressOptions, enabled: Bool) throws {
    self.options = options
    self.enabled = enabled
    isTerminal = isatty(STDERR_FILENO) != 0
    if enabled, let path = options.jsonLog {
      guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
        throw BuildError("\(path): cannot create the JSON log")
      }
      log = h
    } else {
      log = nil
    }
  }

  var elapsed: Double { Date().timeIntervalSince(start) }

  /// One JSON object on one line: `{"event": name, "time": seconds, …fields}`.
  func event(_ name: String, _ fields: [String: Any] = [:]) {
    guard enabled, let log else { return }
    var object = fields
    object["event"] = name
    object["elapsed_s"] = (elapsed * 1000).rounded() / 1000
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
      log.write(data + Data("\n".utf8))
    }
  }

  /// A plain message line (clears a live bar first).
  func message(_ text: String) {
    guard enabled, !options.quiet else { return }
    if drewBar { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)); drewBar = false }
    FileHandle.standardError.write(Data((text + "\n").utf8))
  }

  /// Marks where this run started counting work (reused tiles are not this run's speed).
  func setBaseline(entries: Double) { baselineEntries = entries }

  /// Progress: tiles and entries done out of the totals.
  func update(tilesDone: Int, tilesTotal: Int, entriesDone: Double, entriesTotal: Double, force: Bool = false) {
    guard enabled else { return }
    let now = Date()
    let interval = isTerminal ? 0.25 : options.plainInterval
    guard force || now.timeIntervalSince(lastDraw) >= interval else { return }
    lastDraw = now
    let t = elapsed
    let rate = t > 0 ? (entriesDone - baselineEntries) / t : 0
    let remaining = rate > 0 ? (entriesTotal - entriesDone) / rate : .infinity
    event("progress", ["tiles_done": tilesDone, "tiles_total": tilesTotal, "entries_per_s": rate.rounded(),
                       "eta_s": remaining.isFinite ? remaining.rounded() : -1])
    guard !options.quiet else { return }
    let fraction = entriesTotal > 0 ? entriesDone / entriesTotal : 1
    let stats = "\(tilesDone)/\(tilesTotal) tiles  \(String(format: "%.3g", rate)) entries/s  elapsed \(clock(t))  ETA \(remaining.isFinite ? clock(remaining) : "--:--")"
    if isTerminal {
      let width = 30
      let filled = Int((fraction * Double(width)).rounded(.down))
      let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
      FileHandle.standardError.write(Data("\r\u{1b}[K[\(bar)] \(String(format: "%5.1f", fraction * 100))%  \(stats)".utf8))
      drewBar = true
    } else {
      FileHandle.standardError.write(Data("progress: \(String(format: "%.1f", fraction * 100))%  \(stats)\n".utf8))
    }
  }

  /// Solver progress: iteration, worst residual, elapsed, estimated remaining.
  func solveProgress(iteration: Int, worst: Double, elapsed: Double, eta: Double) {
    guard enabled else { return }
    let now = Date()
    guard now.timeIntervalSince(lastDraw) >= (isTerminal ? 0.25 : options.plainInterval) else { return }
    lastDraw = now
    event("iteration", ["iteration": iteration, "worst_residual": worst, "eta_s": eta.isFinite ? eta.rounded() : -1])
    guard !options.quiet else { return }
    let text = "iteration \(iteration)  worst residual \(String(format: "%.2e", worst))  elapsed \(clock(elapsed))  ETA \(eta.isFinite ? clock(eta) : "--:--")"
    if isTerminal {
      FileHandle.standardError.write(Data("\r\u{1b}[K\(text)".utf8))
      drewBar = true
    } else {
      FileHandle.standardError.write(Data("progress: \(text)\n".utf8))
    }
  }

  func finishBar() {
    if drewBar { FileHandle.standardError.write(Data("\n".utf8)); drewBar = false }
  }

  private func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%02d:%02d", s / 60, s % 60)
  }
}
