import ArgumentParser
import Foundation
import GramBuild

struct VerifyCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Check a kernel file: shapes, attributes, exact symmetry, every tile's checksum, and a random sample of entries recomputed from the data.")

  @Argument(help: "A kernel file written by `ntkgram build`.") var file: String
  @Option(parsing: .unconditional, help: "Entries to recompute from the data (0 skips the recomputation).") var samples: Int = 200
  @Option(parsing: .unconditional, help: "Seed for choosing the entries.") var seed: UInt64 = 1
  @Option(help: "Train data path, when it moved since the build.") var train: String?
  @Option(help: "Test data path, when it moved since the build.") var test: String?
  @Flag(help: "No progress output.") var quiet = false

  func run() throws {
    guard samples >= 0 else { throw CommandError("--samples must be ≥ 0") }
    // Each sample is one scalar reference evaluation (up to seconds for a pooled CNTK entry).
    guard samples <= 1_000_000 else { throw CommandError("--samples must be at most 1000000 (got \(samples))") }
    let events = try ProgressRenderer(options: ProgressOptions(quiet: quiet), rank: 0)
    let report = try KernelVerifier(path: file, samples: samples, seed: seed, trainOverride: train, testOverride: test).run(events: events)
    for line in report.checks { print("ok: \(line)") }
    print("\(file): verified")
  }
}
