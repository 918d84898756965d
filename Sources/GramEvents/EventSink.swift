#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How libraries report what they are doing: to a sink the caller owns (the CLI renders a
/// progress bar, plain lines and a JSON log; tests collect events in memory). No library
/// target writes to the terminal itself.
///
/// Drivers send `message`, `record` and `progress` from rank 0 only; `warning` from any rank
/// (a damaged checkpoint is found by the rank that verifies it); `fatal` from a rank that is
/// about to abort the whole job.
public protocol EventSink: AnyObject, Sendable {
  /// A line for the user.
  func message(_ text: String)
  /// Something went wrong and was handled (a damaged checkpoint, recomputed).
  func warning(_ text: String)
  /// A failure that ends the job from inside a phase that cannot agree on it (the rank aborts next).
  func fatal(_ text: String)
  /// A structured event for machine-readable logs: a name and its fields (numbers, strings,
  /// lists of strings).
  func record(_ name: String, _ fields: [String: EventField])
  /// Work done so far (rate-limited by the sink, unless `force`).
  func progress(_ progress: WorkProgress, force: Bool)
  /// The end of a run of `progress` reports (a live bar ends its line).
  func finishProgress()
}

/// A field of a structured event.
public enum EventField: Sendable, Equatable {
  case int(Int)
  case double(Double)
  case string(String)
  case strings([String])
}

/// Work done so far.
public enum WorkProgress: Sendable, Equatable {
  /// A build: tiles and kernel entries done out of the totals; `baselineEntries` were done by an
  /// earlier run (not this run's speed).
  case build(tilesDone: Int, tilesTotal: Int, entriesDone: Double, entriesTotal: Double, baselineEntries: Double)
  /// An iterative solve: iteration, worst residual, seconds so far and estimated to go.
  case iteration(Int, worstResidual: Double, elapsed: Double, eta: Double)
  /// Gradient-descent training: step, of how many, the training loss, seconds so far and to go.
  case training(step: Int, steps: Int, loss: Double, elapsed: Double, eta: Double)
  /// A pass of countable steps (`verify`: tiles checked, entries recomputed), with the seconds
  /// the pass has run.
  case steps(String, done: Int, total: Int, elapsed: Double)
}

/// A sink that drops everything.
public final class SilentSink: EventSink {
  public init() {}
  public func message(_ text: String) {}
  public func warning(_ text: String) {}
  public func fatal(_ text: String) {}
  public func record(_ name: String, _ fields: [String: EventField]) {}
  public func progress(_ progress: WorkProgress, force: Bool) {}
  public func finishProgress() {}
}

/// A sink that keeps every event, in order (for tests and embedding).
public final class CollectingSink: EventSink, @unchecked Sendable {
  public enum Entry: Sendable, Equatable {
    case message(String), warning(String), fatal(String), record(String, [String: EventField]), progress(WorkProgress), finish
  }

  private let lock = SinkLock()
  private var stored: [Entry] = []

  public init() {}

  public var entries: [Entry] { lock.with { stored } }
  public var warnings: [String] { entries.compactMap { if case .warning(let w) = $0 { w } else { nil } } }
  public var messages: [String] { entries.compactMap { if case .message(let m) = $0 { m } else { nil } } }

  public func message(_ text: String) { lock.with { stored.append(.message(text)) } }
  public func warning(_ text: String) { lock.with { stored.append(.warning(text)) } }
  public func fatal(_ text: String) { lock.with { stored.append(.fatal(text)) } }
  public func record(_ name: String, _ fields: [String: EventField]) { lock.with { stored.append(.record(name, fields)) } }
  public func progress(_ progress: WorkProgress, force: Bool) { lock.with { stored.append(.progress(progress)) } }
  public func finishProgress() { lock.with { stored.append(.finish) } }
}

/// A pthread mutex (this target needs no Foundation).
final class SinkLock: @unchecked Sendable {
  private var mutex = pthread_mutex_t()
  init() { pthread_mutex_init(&mutex, nil) }
  deinit { pthread_mutex_destroy(&mutex) }
  func with<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(&mutex)
    defer { pthread_mutex_unlock(&mutex) }
    return try body()
  }
}
