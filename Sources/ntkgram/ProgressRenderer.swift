import Foundation
import GramEvents
import GramStorage

/// How a command reports: a live bar on a terminal, plain periodic lines otherwise, nothing
/// with `quiet`; and, with `jsonLog`, one JSON object per event in that file.
struct ProgressOptions: Sendable {
  var quiet: Bool
  var jsonLog: String?
  /// Append to an existing log (a resumed run) instead of replacing it.
  var appendLog: Bool
  /// Seconds between plain lines when stderr is not a terminal.
  var plainInterval: Double

  init(quiet: Bool = false, jsonLog: String? = nil, appendLog: Bool = false, plainInterval: Double = 10) {
    self.quiet = quiet
    self.jsonLog = jsonLog
    self.appendLog = appendLog
    self.plainInterval = plainInterval
  }
}

/// The CLI's event sink: renders what the drivers report on stderr (and the JSON log). Rank 0
/// renders progress and messages; every rank prints its own warnings and fatal errors.
final class ProgressRenderer: EventSink, @unchecked Sendable {
  private let options: ProgressOptions
  private let rank: Int
  private let isTerminal: Bool
  private let log: OutputWriter?
  /// Why the JSON log stopped (a full disk): reported once as a warning, and by `logFailure`.
  private var logProblem: String?
  private let start = Date()
  private let lock = NSLock()
  private var lastDraw = Date.distantPast
  private var drewBar = false
  private var latest: WorkProgress?

  /// The last progress reported (drawn or not): how far an interrupted command got.
  var lastProgress: WorkProgress? { lock.withLock { latest } }

  init(options: ProgressOptions, rank: Int) throws {
    self.options = options
    self.rank = rank
    isTerminal = isatty(STDERR_FILENO) != 0
    if rank == 0, let path = options.jsonLog {
      log = try OutputWriter(path: path, what: "the JSON log (--log-json)", append: options.appendLog)
    } else {
      log = nil
    }
  }

  private var elapsed: Double { Date().timeIntervalSince(start) }

  private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

  /// Clears a live bar before a line of text.
  private func clearBar() {
    if drewBar { write("\r\u{1b}[K"); drewBar = false }
  }

  func message(_ text: String) {
    lock.withLock {
      guard rank == 0, !options.quiet else { return }
      clearBar()
      write(text + "\n")
    }
  }

  func warning(_ text: String) {
    lock.withLock {
      clearBar()
      write("ntkgram: warning: \(text)\n")
    }
  }

  func fatal(_ text: String) {
    lock.withLock {
      clearBar()
      write("ntkgram: error: \(text)\n")
    }
  }

  /// One JSON object on one line: `{"event": name, "elapsed_s": seconds, …fields}`.
  func record(_ name: String, _ fields: [String: EventField]) {
    lock.withLock { writeRecord(name, fields) }
  }

  private func writeRecord(_ name: String, _ fields: [String: EventField]) {
    guard let log else { return }
    var object: [String: Any] = [:]
    for (k, v) in fields {
      switch v {
      case .int(let i): object[k] = i
      case .double(let d): object[k] = d.isFinite ? d : -1
      case .string(let s): object[k] = s
      case .strings(let s): object[k] = s
      }
    }
    object["event"] = name
    object["elapsed_s"] = (elapsed * 1000).rounded() / 1000
    guard logProblem == nil, let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
    if let problem = log.write(Array(data) + [0x0a]) {
      logProblem = problem
      clearBar()
      write("ntkgram: warning: \(log.path): the JSON log stopped: \(problem); the command goes on\n")
    }
  }

  /// The error to end the command with when the JSON log could not be written whole (its
  /// other outputs are written): nil when it was.
  var logFailure: StorageError? {
    lock.withLock { logProblem.map { StorageError(log?.path ?? "", "the JSON log (--log-json) is incomplete: \($0); every other output was written") } }
  }

  func progress(_ progress: WorkProgress, force: Bool) {
    lock.withLock {
      guard rank == 0 else { return }
      latest = progress
      let now = Date()
      let interval = isTerminal ? 0.25 : options.plainInterval
      guard force || now.timeIntervalSince(lastDraw) >= interval else { return }
      lastDraw = now
      let t = elapsed
      let text: String
      var bar: String? = nil
      switch progress {
      case .build(let tilesDone, let tilesTotal, let entriesDone, let entriesTotal, let baseline):
        let rate = t > 0 ? (entriesDone - baseline) / t : 0
        let remaining = rate > 0 ? (entriesTotal - entriesDone) / rate : .infinity
        writeRecord("progress", ["tiles_done": .int(tilesDone), "tiles_total": .int(tilesTotal), "entries_per_s": .double(rate.rounded()),
                                 "eta_s": .double(remaining.isFinite ? remaining.rounded() : -1)])
        let fraction = entriesTotal > 0 ? entriesDone / entriesTotal : 1
        text = "\(tilesDone)/\(tilesTotal) tiles  \(String(format: "%.3g", rate)) entries/s  elapsed \(clock(t))  ETA \(remaining.isFinite ? clock(remaining) : "--:--")"
        let width = 30
        let filled = Int((fraction * Double(width)).rounded(.down))
        bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + String(format: "%5.1f%%  ", fraction * 100)
        if !isTerminal { bar = String(format: "%.1f%%  ", fraction * 100) }
      case .iteration(let iteration, let worst, let elapsed, let eta):
        writeRecord("iteration", ["iteration": .int(iteration), "worst_residual": .double(worst), "eta_s": .double(eta.isFinite ? eta.rounded() : -1)])
        text = "iteration \(iteration)  worst residual \(String(format: "%.2e", worst))  elapsed \(clock(elapsed))  ETA \(eta.isFinite ? clock(eta) : "--:--")"
      case .steps(let what, let done, let total, let elapsed):
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : .infinity
        writeRecord("steps", ["what": .string(what), "done": .int(done), "total": .int(total), "eta_s": .double(eta.isFinite ? eta.rounded() : -1)])
        text = "\(done)/\(total) \(what)  elapsed \(clock(elapsed))  ETA \(eta.isFinite ? clock(eta) : "--:--")"
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 30
        let filled = Int((fraction * Double(width)).rounded(.down))
        bar = isTerminal
          ? "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + String(format: "%5.1f%%  ", fraction * 100)
          : String(format: "%.1f%%  ", fraction * 100)
      case .training(let step, let steps, let loss, let elapsed, let eta):
        writeRecord("training", ["step": .int(step), "steps": .int(steps), "train_loss": .double(loss), "eta_s": .double(eta.isFinite ? eta.rounded() : -1)])
        text = "step \(step)/\(steps)  train loss \(String(format: "%.4g", loss))  elapsed \(clock(elapsed))  ETA \(eta.isFinite ? clock(eta) : "--:--")"
      }
      guard !options.quiet else { return }
      if isTerminal {
        write("\r\u{1b}[K\(bar ?? "")\(text)")
        drewBar = true
      } else {
        write("progress: \(bar ?? "")\(text)\n")
      }
    }
  }

  func finishProgress() {
    lock.withLock { if drewBar { write("\n"); drewBar = false } }
  }

  private func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%02d:%02d", s / 60, s % 60)
  }
}
