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
      usleep(400_000)
      let present = Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
      let missing = hosts.indices.filter { !present.contains(Self.marker($0)) }
      let resume = "\(countTiles()) of \(totalTiles) tiles are checkpointed in \(folder): rerun the same command, on the hosts you have, to resume"
      let what = missing.isEmpty
        ? "the MPI launcher ended the job (a rank or host failed, or the job was cancelled)"
        : missing.map { "rank \($0) on host \(hosts[$0])" }.joined(separator: ", ") + " failed" +
          " (no answer to the launcher's stop signal); the job was ended"
      events.fatal("\(what). \(resume)")
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
        events.fatal("interrupted (\(name)): \(countTiles()) of \(totalTiles) tiles are written to \(partial) and recorded in \(folder); rerun the same command to resume")
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
