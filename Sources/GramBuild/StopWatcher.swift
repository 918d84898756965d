import Foundation
import GramEvents

/// Names the rank that failed when the MPI launcher ends a job.
///
/// When a rank or its whole host dies, `mpirun` stops every other rank with SIGTERM (then
/// SIGKILL a second later) and itself prints only a generic message. While tiles are computed,
/// every rank answers SIGTERM by leaving a marker `.stopped-rank-R` in the shared checkpoint
/// folder; rank 0 waits a moment for the markers, and the ranks that left none are the ones
/// that were already gone: it names them and their hosts, and says how to resume.
final class StopWatcher {
  private let source: DispatchSourceSignal
  private let queue = DispatchQueue(label: "ntkgram.stop-watcher")

  init(folder: String, rank: Int, hosts: [String], events: EventSink, countTiles: @escaping () -> Int, totalTiles: Int) {
    for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name == Self.marker(rank) {
      unlink(folder + "/" + name)
    }
    signal(SIGTERM, SIG_IGN)
    source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: queue)
    source.setEventHandler {
      _ = FileManager.default.createFile(atPath: folder + "/" + Self.marker(rank), contents: Data(hosts[rank].utf8))
      guard rank == 0 else { _exit(143) }
      // Said at once: the launcher kills the ranks about a second after its SIGTERM, and stops
      // forwarding their output soon after. Which ranks failed is a second line, if any did.
      // "At least": tiles in flight on the ranks still running are recorded after the count.
      let line = "stopped by the MPI launcher (SIGTERM: Ctrl-C, a cancelled job, or a failed rank): at least \(countTiles()) of \(totalTiles) tiles are checkpointed in \(folder); rerun the same command, on the hosts you have, to resume"
      StopNote.say(line, events)
      usleep(400_000)
      let present = Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
      let missing = hosts.indices.filter { !present.contains(Self.marker($0)) }
      if !missing.isEmpty {
        let failed = missing.map { "rank \($0) on host \(hosts[$0])" }.joined(separator: ", ") + " failed (no answer to the launcher's stop signal)"
        StopNote.say(failed, events, after: line)
      }
      for r in hosts.indices { unlink(folder + "/" + Self.marker(r)) }
      _exit(1)
    }
    source.resume()
  }

  static func marker(_ rank: Int) -> String { ".stopped-rank-\(rank)" }

  /// Back to the default SIGTERM behaviour.
  func stop() {
    source.cancel()
    signal(SIGTERM, SIG_DFL)
  }
}

/// A build run as one process (no launcher), stopped with SIGINT (Ctrl-C) or SIGTERM while
/// tiles are computed: says what is kept and how to resume, in one line, instead of vanishing.
/// Every tile recorded so far is whole in the partial file (records follow the bytes).
final class InterruptWatcher {
  private let sources: [DispatchSourceSignal]
  private let queue = DispatchQueue(label: "ntkgram.interrupt-watcher")

  init(folder: String, partial: String, events: EventSink, countTiles: @escaping () -> Int, totalTiles: Int) {
    var sources: [DispatchSourceSignal] = []
    for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
      source.setEventHandler {
        let line = "interrupted (\(name)): \(countTiles()) of \(totalTiles) tiles are written to \(partial) and recorded in \(folder); rerun the same command to resume"
        StopNote.say(line, events)
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
}

/// Where a stopped build says how to resume.
///
/// `mpirun` stops forwarding the ranks' output as soon as it is interrupted with SIGINT (a
/// terminal's Ctrl-C), and sometimes on SIGTERM, so the line rank 0 prints is lost. A launcher
/// script (`cluster/local.sh`, the mpirun branch of `cluster/slurm.sbatch`) names a file in
/// `NTKGRAM_STOP_NOTE`: rank 0 then writes its lines there instead of to stderr, and the
/// script prints them after `mpirun` has exited.
enum StopNote {
  static func say(_ text: String, _ events: EventSink, after earlier: String? = nil) {
    guard let path = ProcessInfo.processInfo.environment["NTKGRAM_STOP_NOTE"], !path.isEmpty else {
      events.fatal(text)
      return
    }
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      events.fatal(text)
      return
    }
    let lines = ([earlier, text].compactMap { $0 }).map { "ntkgram: error: " + $0 + "\n" }.joined()
    let bytes = Array(lines.utf8)
    _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    close(fd)
  }
}
