import ArgumentParser
import Foundation
import GramAnalysis
import GramJobs
import GramStorage
import GramTransport

// Every failure is one line on stderr, `ntkgram: error: …`, and a non-zero exit status:
// 2 for command-line usage errors and invalid values (as argparse and most Unix tools; not
// ArgumentParser's 64), 1 for failures while running (bad files, I/O). `--help` and `--version` print as usual. Under mpirun a
// failure every rank agrees on is printed once, by rank 0.
func fail(_ message: String, status: Int32, quietRank: Bool = launcherRank != 0) -> Never {
  if !quietRank { FileHandle.standardError.write(Data("ntkgram: error: \(message)\n".utf8)) }
  // Outside mpirun, `_exit`: HDF5's exit handler retries closing a file whose last write failed
  // (a full disk) and prints pages of diagnostics; every output is committed or discarded by now.
  // Under mpirun the launcher expects the usual exit.
  if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil {
    fflush(nil)
    _exit(status)
  }
  exit(status)
}

/// This process's rank as the launcher set it (0 when run alone).
let launcherRank: Int = {
  let env = ProcessInfo.processInfo.environment
  return ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"].lazy.compactMap { env[$0].flatMap(Int.init) }.first ?? 0
}()

// A child started to read an old-format HDF5 file's metadata first (`HDF5Probe`): only that.
if CommandLine.arguments.count == 4, CommandLine.arguments[1] == HDF5Probe.argument, let seconds = UInt32(CommandLine.arguments[3]) {
  exit(HDF5Probe.probe(CommandLine.arguments[2], seconds: seconds))
}
HDF5Probe.executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")

// OpenBLAS chooses its kernels when it loads, from cpuid; where it falls back to SSE3 kernels on
// an AVX2/AVX-512 CPU (see `preferredLinearAlgebraCore`), the subcommands that use it start
// again, once, with the core type named: the same process (pid, MPI environment), the same
// arguments.
if getenv("NTKGRAM_RELAUNCHED") != nil {
  unsetenv("NTKGRAM_RELAUNCHED")  // not inherited by what this process starts
} else if CommandLine.arguments.count > 1, ["solve", "predict", "bench", "dynamics", "spectrum", "train"].contains(CommandLine.arguments[1]),
          let core = preferredLinearAlgebraCoreForThisCPU() {
  setenv("OPENBLAS_CORETYPE", core, 1)
  setenv("NTKGRAM_RELAUNCHED", "1", 1)
  // The binary's own path (not /proc/self/exe), so the process keeps its name for ps and pgrep.
  if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
    execv(path, CommandLine.unsafeArgv)
  }
  // If exec fails, carry on with the kernels OpenBLAS chose.
  unsetenv("NTKGRAM_RELAUNCHED")
}

var command: ParsableCommand
do {
  command = try NTKGramCommand.parseAsRoot()
} catch {
  let code = NTKGramCommand.exitCode(for: error)
  if code == .success { NTKGramCommand.exit(withError: error) }
  fail(NTKGramCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)", status: code.rawValue == 64 ? 2 : code.rawValue)
}
do {
  try command.run()
} catch let error as CommandError {
  fail(error.description, status: 2)
} catch let error as SettingsError {
  fail(error.description, status: 2)
} catch let error as InvalidValue {
  // An invalid value found while running (a layer list that cannot take the data): still a value.
  fail("\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)", status: 2)
} catch let error as CollectiveFailure {
  fail(error.message.split(separator: "\n").first.map(String.init) ?? error.message, status: error.isInvalidValue ? 2 : 1)
} catch {
  let code = NTKGramCommand.exitCode(for: error)
  if code == .success { NTKGramCommand.exit(withError: error) }
  let text = error is LocalizedError || String(describing: type(of: error)).contains("ValidationError")
    ? NTKGramCommand.message(for: error) : "\(error)"
  fail(text.split(separator: "\n").first.map(String.init) ?? text, status: code == .failure ? 1 : code.rawValue == 64 ? 2 : code.rawValue, quietRank: false)
}
