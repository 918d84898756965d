/// A storage failure, always naming the file it concerns.
///
/// `description` is one line, `FILE: problem`, ready for the command line.
public struct StorageError: Error, CustomStringConvertible, Equatable {
  public let path: String
  public let message: String

  public init(_ path: String, _ message: String) {
    self.path = path
    self.message = message
  }

  public var description: String { "\(path): \(message)" }
}
