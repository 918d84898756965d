import Foundation
import GramEvents
import GramStorage

/// `train` and `dynamics` keep no checkpoint: stopped with SIGINT (Ctrl-C) or SIGTERM (a
/// scheduler, `mpirun`) while they compute, they say in one line how far they got, what is
/// lost and how to run again, and exit 130 / 143 — instead of vanishing. Rank 0 says it; the
/// other ranks of an `mpirun` job exit quietly. An output written before the signal (the
/// command was finishing) is said as such.
final class InterruptNotice {
  private let sources: [DispatchSourceSignal]
  private let queue = DispatchQueue(label: "ntkgram.interrupt-notice")

  /// `line(signalName, outputWritten)` is the line to print (without `ntkgram: error: `).
  /// The hidden files this process was writing for `output` and `others` (`partialPath`: a
  /// signal while the output is written) are removed before it exits.
  init(rank: Int, output: String, others: [String] = [], line: @escaping (String, Bool) -> String) {
    let before = Self.identity(output)
    var sources: [DispatchSourceSignal] = []
    for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
      source.setEventHandler {
        if rank == 0 {
          let written = Self.identity(output).map { $0 != before } ?? false
          let clear = isatty(STDERR_FILENO) != 0 ? "\r\u{1b}[K" : ""  // a live progress bar's line
          FileHandle.standardError.write(Data("\(clear)ntkgram: error: \(line(name, written))\n".utf8))
        }
        for path in [output] + others { unlink(partialPath(of: path)) }
        fflush(nil)
        _exit(128 + number)
      }
      source.resume()
      sources.append(source)
    }
    self.sources = sources
  }

  /// Back to the default behaviour of both signals.
  func stop() {
    for s in sources { s.cancel() }
    signal(SIGINT, SIG_DFL)
    signal(SIGTERM, SIG_DFL)
  }

  /// The file at `path` as (device, inode, modification time), nil when there is none: a
  /// different value after the run means the run replaced it.
  static func identity(_ path: String) -> [Int]? {
    var s = stat()
    guard stat(path, &s) == 0 else { return nil }
    return [Int(s.st_dev), Int(s.st_ino), Int(s.st_mtim.tv_sec), Int(s.st_mtim.tv_nsec)]
  }
}

extension InterruptNotice {
  /// The line of an interrupted `train`, from the last step it reported.
  static func trainLine(_ signal: String, written: Bool, progress: WorkProgress?, out: String) -> String {
    if written { return "interrupted (\(signal)) while finishing: \(out) is written; the metrics file, if any, may be missing (rerun with --force to write both)" }
    let reached: String
    if case .training(let step, let steps, let loss, _, _)? = progress {
      reached = "at step \(step) of \(steps) (train loss \(String(format: "%.4g", loss)))"
    } else {
      reached = "before the first step"
    }
    return "interrupted (\(signal)) \(reached): nothing is written (train keeps no checkpoint); rerun the same command to train again from step 0"
  }

  /// The line of an interrupted `dynamics`, from the last check of its block Lanczos basis.
  static func dynamicsLine(_ signal: String, written: Bool, progress: WorkProgress?, out: String, tolerance: Double) -> String {
    if written { return "interrupted (\(signal)) while finishing: \(out) is written; the metrics file, if any, may be missing (rerun with --force to write both)" }
    let reached: String
    if case .iteration(let steps, let worst, _, _)? = progress {
      reached = "after at least \(steps) block Lanczos steps (worst error estimate \(String(format: "%.2e", worst)), tol \(tolerance))"
    } else {
      reached = "before its first estimate"
    }
    return "interrupted (\(signal)) \(reached): nothing is written (dynamics keeps no checkpoint: its basis is rebuilt); rerun the same command to start again"
  }
}
