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
    let stopped = "stopped by the MPI launcher (SIGTERM: Ctrl-C, a cancelled job, or a failed rank): "
    let resume = " checkpointed in \(folder); rerun the same command, on the hosts you have, to resume"
    // Made now: the launcher SIGKILLs the ranks about a second after its SIGTERM, and on a
    // loaded machine this handler may get little of that second.
    let early = Array(("ntkgram: error: " + stopped + "the tiles finished so far are" + resume + "\n").utf8)
    let markerPath = folder + "/" + Self.marker(rank), host = Array(hosts[rank].utf8)
    signal(SIGTERM, SIG_IGN)
    source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: queue)
    source.setEventHandler {
      // Rank 0 first leaves a line for the launcher script (if it named a file), then every
      // rank its marker (plain writes: no temporary file to leave behind), then rank 0 counts.
      if rank == 0 { StopNote.write(early) }
      let fd = open(markerPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
      if fd >= 0 {
        _ = host.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
      }
      guard rank == 0 else { _exit(143) }
      // Which ranks failed is a second line, if any did. "At least": tiles in flight on the
      // ranks still running are recorded after the count.
      let line = stopped + "at least \(countTiles()) of \(totalTiles) tiles are" + resume
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
    let lines = ([earlier, text].compactMap { $0 }).map { "ntkgram: error: " + $0 + "\n" }.joined()
    if !write(Array(lines.utf8)) { events.fatal(text) }
  }

  /// Replaces the note with `bytes`, atomically (a temporary file renamed over it: a rank
  /// killed midway leaves the earlier note whole); false when no note is named or it cannot be
  /// written.
  @discardableResult
  static func write(_ bytes: [UInt8]) -> Bool {
    guard let path = getenv("NTKGRAM_STOP_NOTE").map({ String(cString: $0) }), !path.isEmpty else { return false }
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    close(fd)
    guard n == bytes.count, rename(temporary, path) == 0 else {
      unlink(temporary)
      return false
    }
    return true
  }
}
