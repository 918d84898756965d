import ArgumentParser
import Foundation

// Every failure is one line on stderr, `ntkgram: error: …`, and a non-zero exit; `--help` and
// `--version` print as usual.
do {
  var command = try NTKGramCommand.parseAsRoot()
  try command.run()
} catch {
  if NTKGramCommand.exitCode(for: error) == .success { NTKGramCommand.exit(withError: error) }
  let message = NTKGramCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
  FileHandle.standardError.write(Data("ntkgram: error: \(message)\n".utf8))
  exit(error is ValidationError || error is CommandError ? 2 : 1)
}
